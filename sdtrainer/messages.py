"""Messages the core modules show to people, each under a key, in English and French.

A core error is raised with a `Message`: a `str` holding its English text (so `str(error)`, the CLI and
the logs read exactly as before) that also keeps its key and fields, so the web UI can say it in the
page's language:

    raise CheckpointError(Message("ckpt_not_found", path=path))
    str(error)                           # "Checkpoint not found: /x.ckpt. Check the path."
    say_in(message_of(error), "fr")      # "Modèle introuvable : /x.ckpt. Vérifiez le chemin."

A field may itself be a Message (a hint several errors share), or a list of them (joined by "; "):
it is said in the same language. Plain text (file names, numbers, an exception's own words) stays as it
is. The GPU gate's reasons and report (`GateReport.format(lang)`), the training session's outcome, every line
a run writes to its log (`sdtrainer.trainer.events.log`), the image checks' findings and the prompt lint use the
same catalogue.

Two catalogues, one rule. This one, MESSAGES, holds what the core says to people: everything outside
sdtrainer/ui/ (and webui.py's command line) that a person reads, above all every error raised for a person
to fix (ValueError and its kinds: ConfigError, DatasetError, CheckpointError...), which carries a Message,
never plain text. sdtrainer/ui/i18n.STRINGS holds what only the web page says: labels, help, buttons, its
own status lines and UIError keys. The page says a core Message through `Say.message`, never by copying its
text into STRINGS. A key lives in one catalogue only; tests/test_messages.py checks both rules (it reads
every `raise` and every log line). Errors that mean a bug in sdtrainer (RuntimeError) stay in English.
"""
from string import Formatter

LANGUAGES = ("en", "fr")


class Message(str):
    """English text that remembers its key and fields, so it can be said in another language."""

    key: str
    fields: dict

    def __new__(cls, key: str, /, **fields):
        self = super().__new__(cls, say_in_fields(key, fields, "en"))
        self.key, self.fields = key, fields
        return self

    def __reduce__(self):  # copy.deepcopy (session snapshots) and pickle rebuild it from key and fields
        return _rebuild, (self.key, self.fields)

    def said(self, lang: str) -> str:
        return say_in(self, lang)


def _rebuild(key: str, fields: dict) -> Message:
    return Message(key, **fields)


def say_in(message: str, lang: str) -> str:
    """`message` in `lang` when it is a Message (English where `lang` lacks it); other text unchanged."""
    if not isinstance(message, Message):
        return str(message)
    return say_in_fields(message.key, message.fields, lang)


def say_in_fields(key: str, fields: dict, lang: str) -> str:
    said = {name: "; ".join(say_in(v, lang) for v in value) if isinstance(value, (list, tuple)) else
            say_in(value, lang) if isinstance(value, Message) else value for name, value in fields.items()}
    return in_language(MESSAGES[key], lang).format(**said)


def in_language(entry: dict[str, str], lang: str) -> str:
    """A catalogue entry's text in `lang`, English where `lang` lacks it (this catalogue and the UI's)."""
    return entry.get(lang) or entry["en"]


def message_of(error: BaseException) -> str:
    """The error's Message when it was raised with one, else its (English) text."""
    first = error.args[0] if error.args else None
    return first if isinstance(first, Message) and len(error.args) == 1 else str(error)


def field_names(template: str) -> set[str]:
    """{"path", "name"} for "Checkpoint {path}: {name!r}" (what the tests compare between languages)."""
    return {name for _, name, _, _ in Formatter().parse(template) if name}


# Keys by module: ckpt_/kind_ checkpoint.py, lora_ lora.py and lora_extract.py, ds_ dataset.py, cfg_ config.py,
# gen_ sampling.py, gate_ preflight.py, run_ session.py, train_ trainer/ (its log), meter_ meter.py, server_
# ui/guard.py and webui.py.
MESSAGES: dict[str, dict[str, str]] = {
    # ------------------------------------------------------------------ checkpoint.py
    "ckpt_in_file": {"en": "{name}: {error}", "fr": "{name} : {error}"},
    "ckpt_need_sd_v1": {
        "en": "sdtrainer needs a Stable Diffusion v1 single-file checkpoint such as {example}",
        "fr": "sdtrainer a besoin d'un modèle Stable Diffusion v1 en un seul fichier, par exemple {example}",
    },
    "ckpt_folder": {
        "en": "{path} is a folder; choose a single-file .safetensors or .ckpt checkpoint.",
        "fr": "{path} est un dossier ; choisissez un modèle en un seul fichier .safetensors ou .ckpt.",
    },
    "ckpt_diffusers_folder": {
        "en": "{path} is a folder (a diffusers folder); choose a single-file .safetensors or .ckpt checkpoint.",
        "fr": "{path} est un dossier (un dossier diffusers) ; choisissez un modèle en un seul fichier .safetensors "
              "ou .ckpt.",
    },
    "ckpt_not_found": {"en": "Checkpoint not found: {path}. Check the path.",
                       "fr": "Modèle introuvable : {path}. Vérifiez le chemin."},
    "ckpt_file_type": {
        "en": "{name}: unsupported file type '{suffix}'; use a .safetensors or .ckpt single-file checkpoint.",
        "fr": "{name} : type de fichier « {suffix} » non pris en charge ; utilisez un modèle en un seul fichier "
              ".safetensors ou .ckpt.",
    },
    "ckpt_empty": {
        "en": "{name} is empty (0 bytes); the download or save did not finish. Download it again.",
        "fr": "{name} est vide (0 octet) : le téléchargement ou l'enregistrement n'a pas abouti. "
              "Téléchargez-le à nouveau.",
    },
    "ckpt_hint_corrupt": {"en": "it is probably truncated or corrupt: download it again.",
                          "fr": "il est sans doute tronqué ou abîmé : téléchargez-le à nouveau."},
    "ckpt_hint_is_ckpt": {"en": "it is really a PyTorch .ckpt file: rename it to .ckpt.",
                          "fr": "c'est en fait un fichier PyTorch .ckpt : renommez-le en .ckpt."},
    "ckpt_hint_is_safetensors": {"en": "it is really a .safetensors file: rename it to .safetensors.",
                                 "fr": "c'est en fait un fichier .safetensors : renommez-le en .safetensors."},
    "ckpt_bad_safetensors": {"en": "{name} is not a readable .safetensors file ({reason}); {hint}",
                             "fr": "{name} n'est pas un fichier .safetensors lisible ({reason}) ; {hint}"},
    "ckpt_bad_pickle": {"en": "{name} is not a readable PyTorch checkpoint ({reason}); {hint}",
                        "fr": "{name} n'est pas un modèle PyTorch lisible ({reason}) ; {hint}"},
    "ckpt_unexpected_pickle": {"en": "unexpected pickle data", "fr": "données pickle inattendues"},
    "ckpt_code_outside": {"en": "code outside the weights", "fr": "du code en dehors des poids"},
    "ckpt_runs_code": {
        "en": "{name} tries to run code: its pickle asks for {what}, which a checkpoint does not need. It was "
              "refused and nothing in it ran. Use a .safetensors version of this model, or get the file from a "
              "source you trust.",
        "fr": "{name} essaie d'exécuter du code : son pickle demande {what}, dont un modèle n'a pas besoin. Il a "
              "été refusé et rien n'a été exécuté. Utilisez une version .safetensors de ce modèle, ou prenez le "
              "fichier d'une source de confiance.",
    },
    "ckpt_not_weights": {"en": "{name} holds a {type}, not a model's weights; {need}.",
                         "fr": "{name} contient un {type}, pas les poids d'un modèle ; {need}."},
    "ckpt_no_tensors": {"en": "{name} holds no tensors; {need}.", "fr": "{name} ne contient aucun tenseur ; {need}."},
    "ckpt_no_ema": {
        "en": "This file has no EMA weights (model_ema.*); turn off 'use EMA' to use its weights.",
        "fr": "Ce fichier n'a pas de poids EMA (model_ema.*) ; n'utilisez pas l'EMA pour prendre ses poids.",
    },
    "ckpt_unsupported": {"en": "This is {kind}; {need}.", "fr": "C'est {kind} ; {need}."},
    "ckpt_mixed_parts": {
        "en": "The text encoder's width ({text}) does not match the UNet's context width ({context}): the file "
              "mixes parts of different models; {need}.",
        "fr": "La largeur de l'encodeur de texte ({text}) ne correspond pas à celle du contexte de l'UNet "
              "({context}) : le fichier mélange des parties de modèles différents ; {need}.",
    },
    "ckpt_lacks_key": {"en": "The file lacks {key}, so its architecture cannot be read; {need}.",
                       "fr": "Il manque {key} dans le fichier : son architecture ne peut pas être lue ; {need}."},
    "ckpt_mismatch": {
        "en": "{name} does not match the {config} architecture ({parts}). It is damaged or a different model; {need}.",
        "fr": "{name} ne correspond pas à l'architecture {config} ({parts}). Il est abîmé ou c'est un autre "
              "modèle ; {need}.",
    },
    "ckpt_save_suffix": {"en": "Cannot save as '{suffix}': name the file .safetensors (or .ckpt).",
                         "fr": "Impossible d'enregistrer en « {suffix} » : nommez le fichier .safetensors (ou .ckpt)."},
    "ckpt_no_folder": {"en": "The folder {folder} does not exist; create it or choose another.",
                       "fr": "Le dossier {folder} n'existe pas ; créez-le ou choisissez-en un autre."},
    "ckpt_permission": {"en": "Cannot write {path}: permission denied; choose a folder you can write to.",
                        "fr": "Impossible d'écrire {path} : permission refusée ; choisissez un dossier où vous "
                              "pouvez écrire."},
    "ckpt_bad_state": {
        "en": "Cannot resume from {path}: the training state is damaged, incomplete or was not written by sdtrainer "
              "({kind}). Resume from a copy (state/stepNNNNN.ckpt with keep_all_states), or start a new run from "
              "the run's last model file.",
        "fr": "Impossible de reprendre depuis {path} : l'état d'entraînement est abîmé, incomplet ou n'a pas été "
              "écrit par sdtrainer ({kind}). Reprenez depuis une copie (state/stepNNNNN.ckpt avec "
              "keep_all_states), ou lancez un nouvel entraînement à partir du dernier modèle du dossier.",
    },
    "ckpt_no_space": {
        "en": "Not enough disk space to save {name}: it needs about {needed} GB and {folder} has {free} GB free. "
              "Free some space or choose another folder.",
        "fr": "Pas assez de place sur le disque pour enregistrer {name} : il faut environ {needed} Go et {folder} "
              "n'a que {free} Go libres. Libérez de la place ou choisissez un autre dossier.",
    },
    "ckpt_ema_incomplete": {
        "en": "The file's EMA weights are incomplete: {missing} of {total} UNet tensors have no model_ema copy "
              "(e.g. {example}); turn off 'use EMA'.",
        "fr": "Les poids EMA du fichier sont incomplets : {missing} des {total} tenseurs de l'UNet n'ont pas de copie "
              "model_ema (par ex. {example}) ; n'utilisez pas l'EMA.",
    },
    "ckpt_stage_depths": {"en": "The UNet's stages have different depths {depths}; {need}.",
                          "fr": "Les étages de l'UNet ont des profondeurs différentes {depths} ; {need}."},
    "ckpt_save_folder": {"en": "{path} is a folder; give a file name such as {example}.",
                         "fr": "{path} est un dossier ; donnez un nom de fichier, par exemple {example}."},
    "ckpt_metadata": {
        "en": "Checkpoint metadata must map strings to strings; convert {bad} (json.dumps works for numbers and "
              "lists).",
        "fr": "Les métadonnées d'un modèle doivent associer des textes à des textes ; convertissez {bad} (json.dumps "
              "convient aux nombres et aux listes).",
    },
    "ckpt_meta_tensor": {"en": "{key} has no data (it is on the meta device); load weights before saving.",
                         "fr": "{key} n'a pas de données (il est sur le périphérique meta) ; chargez les poids avant "
                               "d'enregistrer."},
    # what a file is, when it is not an SD v1 model (the {kind} of ckpt_unsupported)
    "kind_lora": {"en": "a LoRA/LyCORIS file (an add-on for a model, not a model)",
                  "fr": "un fichier LoRA/LyCORIS (un complément pour un modèle, pas un modèle)"},
    "kind_embedding": {"en": "a textual-inversion embedding (a text-encoder add-on, not a model)",
                       "fr": "un embedding textual inversion (un complément de l'encodeur de texte, pas un modèle)"},
    "kind_sdxl": {"en": "an SDXL checkpoint", "fr": "un modèle SDXL"},
    "kind_sdxl_context": {"en": "an SDXL checkpoint (context width {context})",
                          "fr": "un modèle SDXL (largeur de contexte {context})"},
    "kind_sd2": {"en": "a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder)",
                 "fr": "un modèle Stable Diffusion 2.x (encodeur de texte OpenCLIP)"},
    "kind_sd2_context": {"en": "a Stable Diffusion 2.x checkpoint (context width 1024)",
                         "fr": "un modèle Stable Diffusion 2.x (largeur de contexte 1024)"},
    "kind_diffusers_part": {
        "en": "a diffusers-format file (one part of a diffusers folder); use a single-file .safetensors/.ckpt instead",
        "fr": "un fichier au format diffusers (une partie d'un dossier diffusers) ; utilisez plutôt un modèle en un "
              "seul fichier .safetensors/.ckpt",
    },
    "kind_vae": {"en": "a VAE alone (no UNet or text encoder)", "fr": "un VAE seul (sans UNet ni encodeur de texte)"},
    "kind_vae_no_unet": {"en": "a VAE alone without a UNet", "fr": "un VAE seul, sans UNet"},
    "kind_text_no_unet": {"en": "a text encoder alone without a UNet", "fr": "un encodeur de texte seul, sans UNet"},
    "kind_vae_text_no_unet": {"en": "a VAE and text encoder without a UNet",
                              "fr": "un VAE et un encodeur de texte sans UNet"},
    "kind_not_sd": {"en": "not a Stable Diffusion model (it has no model.diffusion_model.* weights)",
                    "fr": "pas un modèle Stable Diffusion (il n'a pas de poids model.diffusion_model.*)"},
    "kind_inpainting": {"en": "an inpainting model (UNet input has {channels} channels, SD v1 has 4)",
                        "fr": "un modèle d'inpainting (l'entrée de l'UNet a {channels} canaux, SD v1 en a 4)"},
    "kind_pix2pix": {"en": "an instruct-pix2pix model (UNet input has {channels} channels, SD v1 has 4)",
                     "fr": "un modèle instruct-pix2pix (l'entrée de l'UNet a {channels} canaux, SD v1 en a 4)"},
    "kind_unknown_unet": {"en": "an unknown UNet with {channels} input channels (SD v1 has 4)",
                          "fr": "un UNet inconnu à {channels} canaux d'entrée (SD v1 en a 4)"},
    "kind_unet_no_vae": {"en": "a UNet without its VAE", "fr": "un UNet sans son VAE"},
    "kind_unet_no_text": {"en": "a UNet without its text encoder", "fr": "un UNet sans son encodeur de texte"},
    "kind_unet_no_vae_text": {"en": "a UNet without its VAE and text encoder",
                              "fr": "un UNet sans son VAE ni son encodeur de texte"},
    # ------------------------------------------------------------------ pruning.py
    "prune_same_file": {
        "en": "{name} is the file being pruned; choose another output name (delete the original yourself once the "
              "pruned file works).",
        "fr": "{name} est le fichier à élaguer ; choisissez un autre nom (supprimez vous-même l'original une fois "
              "le fichier élagué vérifié).",
    },
    "prune_exists": {"en": "{path} already exists; choose another name or allow overwriting.",
                     "fr": "{path} existe déjà ; choisissez un autre nom ou autorisez le remplacement."},
    "prune_suffix": {"en": "Cannot save as '{suffix}': name the output .safetensors (or .ckpt).",
                     "fr": "Impossible d'enregistrer en « {suffix} » : nommez le fichier de sortie .safetensors (ou "
                           ".ckpt)."},
    "prune_ema_mode": {"en": "ema must be one of {choices}, not {value!r}.",
                       "fr": "ema doit être l'un de {choices}, pas {value!r}."},
    "prune_reload_failed": {"en": "The pruned file did not load back and was deleted ({error}); {name} is unchanged.",
                            "fr": "Le fichier élagué ne se rechargeait pas et a été supprimé ({error}) ; {name} n'a "
                                  "pas changé."},
    # ------------------------------------------------------------------ lora.py, lora_extract.py
    "lora_not_found": {"en": "LoRA file not found: {path}. Check the path.",
                       "fr": "Fichier LoRA introuvable : {path}. Vérifiez le chemin."},
    "lora_is_model": {"en": "{name} is a model, not a LoRA (it holds {key}): choose it as the model, and a LoRA file "
                            "(lora_unet_… keys) as the LoRA.",
                      "fr": "{name} est un modèle, pas un LoRA (il contient {key}) : choisissez-le comme modèle, et un "
                            "fichier LoRA (clés lora_unet_…) comme LoRA."},
    "lora_not_kohya": {"en": "{name} is not a LoRA in kohya's layout (AUTOMATIC1111's): it holds {key}, where "
                             "lora_unet_…/lora_te_… modules with lora_down, lora_up and alpha were expected "
                             "(LyCORIS/LoHa and DoRA files are not supported).",
                       "fr": "{name} n'est pas un LoRA au format de kohya (celui d'AUTOMATIC1111) : il contient {key}, "
                             "là où des modules lora_unet_…/lora_te_… avec lora_down, lora_up et alpha étaient "
                             "attendus (les fichiers LyCORIS/LoHa et DoRA ne sont pas pris en charge)."},
    "lora_incomplete": {"en": "{name} is incomplete: the module {module} lacks its lora_down or lora_up weight; "
                              "extract or download it again.",
                        "fr": "{name} est incomplet : le module {module} n'a pas son poids lora_down ou lora_up ; "
                              "extrayez-le ou téléchargez-le à nouveau."},
    "lora_unknown_layer": {"en": "{name} adapts {n} layers this SD v1 model does not have (e.g. {module}): it was "
                                 "made for another architecture (SD 2, SDXL…); use a LoRA made for SD v1.",
                           "fr": "{name} modifie {n} couches que ce modèle SD v1 n'a pas (par ex. {module}) : il a été "
                                 "fait pour une autre architecture (SD 2, SDXL…) ; utilisez un LoRA fait pour SD v1."},
    "lora_shape": {"en": "{name} does not fit this model: {module} has up {up} and down {down}, the layer is "
                         "{shape}; use a LoRA made for this architecture.",
                   "fr": "{name} ne convient pas à ce modèle : {module} a up {up} et down {down}, la couche est "
                         "{shape} ; utilisez un LoRA fait pour cette architecture."},
    "lora_weight": {"en": "The LoRA weight must be between 0 and {max} (1 is full strength), got {value}.",
                    "fr": "Le poids du LoRA doit être entre 0 et {max} (1 : pleine force), pas {value}."},
    "lora_same_model": {"en": "The base and the trained model are the same file ({name}): choose the model the "
                              "training started from as the base.",
                        "fr": "Le modèle de base et le modèle entraîné sont le même fichier ({name}) : choisissez "
                              "comme base le modèle dont l'entraînement est parti."},
    "lora_architectures": {
        "en": "{base} ({base_config}) and {tuned} ({tuned_config}) are different architectures: a LoRA is the "
              "difference between a model and the base it was trained from; choose that base.",
        "fr": "{base} ({base_config}) et {tuned} ({tuned_config}) sont des architectures différentes : un LoRA est "
              "la différence entre un modèle et la base dont il a été entraîné ; choisissez cette base.",
    },
    "lora_no_difference": {"en": "{tuned} has the same weights as {base} in every layer a LoRA adapts: nothing to "
                                 "extract (was it trained from this base?).",
                           "fr": "{tuned} a les mêmes poids que {base} dans toutes les couches qu'un LoRA modifie : "
                                 "rien à extraire (a-t-il été entraîné à partir de cette base ?)."},
    "lora_rank": {"en": "{what} must be a whole number from {low} to {high}, got {value}.",
                  "fr": "{what} doit être un nombre entier de {low} à {high}, pas {value}."},
    "lora_rank_name": {"en": "The rank", "fr": "Le rang"},
    "lora_conv_rank_name": {"en": "The conv rank (0: no 3x3 convs)", "fr": "Le rang des convolutions (0 : aucune)"},
    "lora_energy": {"en": "The energy to keep must be above 0 and at most 1 (e.g. 0.9 keeps 90% of each layer's "
                          "difference), got {value}.",
                    "fr": "L'énergie à garder doit être supérieure à 0 et au plus 1 (par ex. 0.9 garde 90 % de la "
                          "différence de chaque couche), pas {value}."},
    "lora_suffix": {"en": "A LoRA is written as .safetensors: name the file {name}.safetensors.",
                    "fr": "Un LoRA s'écrit en .safetensors : nommez le fichier {name}.safetensors."},
    "lora_overwrites_model": {"en": "{name} is one of the two models: choose another name for the LoRA.",
                              "fr": "{name} est l'un des deux modèles : choisissez un autre nom pour le LoRA."},
    # ------------------------------------------------------------------ images.py, dataset.py
    "ds_folder_missing": {
        "en": "Image folder {folder} does not exist or is not a folder; choose the folder that holds the photos.",
        "fr": "Le dossier d'images {folder} n'existe pas ou n'est pas un dossier ; choisissez le dossier qui "
              "contient les photos.",
    },
    "ds_no_images": {"en": "No images found in {where} (looked for {extensions}). Add {what}.",
                     "fr": "Aucune image trouvée dans {where} (extensions cherchées : {extensions}). Ajoutez {what}."},
    "ds_no_usable": {"en": "No usable training images in {where}: {reasons}. Add {what}.",
                     "fr": "Aucune image d'entraînement utilisable dans {where} : {reasons}. Ajoutez {what}."},
    "ds_files_were": {"en": "{n} files were {problem} ({names})", "fr": "{n} fichiers : {problem} ({names})"},
    "ds_file_was": {"en": "1 file was {problem} ({names})", "fr": "1 fichier : {problem} ({names})"},
    "ds_problem_unreadable": {"en": "unreadable", "fr": "illisible"},
    "ds_problem_too_small": {"en": "too small", "fr": "trop petit"},
    "ds_what_photos": {
        "en": "{low}-{high} photos of the subject (sharp, varied, at least {side} px on the short side)",
        "fr": "{low} à {high} photos du sujet (nettes, variées, au moins {side} px sur le petit côté)",
    },
    "ds_what_class": {"en": "regularization images of a {class_word} (or generate them with the base model)",
                      "fr": "des images de régularisation de « {class_word} » (ou générez-les avec le modèle de "
                            "base)"},
    "ds_token_class_unset": {"en": "Set both the token (e.g. `ohwx`) and the class word (e.g. `person`).",
                             "fr": "Indiquez le jeton (par ex. `ohwx`) et le mot de classe (par ex. `person`)."},
    "ds_class_unset": {"en": "Set the class word (e.g. `person`).",
                       "fr": "Indiquez le mot de classe (par ex. `person`)."},
    "ds_unknown_crop": {"en": "Unknown crop {crop!r}; use one of: {choices}.",
                        "fr": "Recadrage {crop!r} inconnu ; utilisez l'un de : {choices}."},
    "ds_selected_files": {"en": "the selected files", "fr": "les fichiers choisis"},
    "ds_output_holds_sources": {
        "en": "The output folder {folder} holds source images; choose another folder so the originals are never "
              "overwritten.",
        "fr": "Le dossier de sortie {folder} contient des images sources ; choisissez un autre dossier, pour que les "
              "originaux ne soient jamais écrasés.",
    },
    "ds_no_opencv": {
        "en": "Face cropping needs OpenCV: run `pip install opencv-python-headless` (it is in requirements.txt), or "
              "use crop='center'.",
        "fr": "Le recadrage sur le visage demande OpenCV : lancez `pip install opencv-python-headless` (il est dans "
              "requirements.txt), ou utilisez crop='center'.",
    },
    "ds_no_cascade": {"en": "OpenCV's {file} could not be loaded; reinstall opencv-python-headless or use "
                            "crop='center'.",
                      "fr": "Impossible de charger {file} d'OpenCV ; réinstallez opencv-python-headless ou utilisez "
                            "crop='center'."},
    # ------------------------------------------------------------------ checks.py: what a finding means, what to do
    "check_counts": {"en": "{total} images checked: {ok} usable, {skipped} skipped.",
                     "fr": "{total} images vérifiées : {ok} utilisables, {skipped} écartées."},
    "check_missing": {"en": "File not found; check the path or remove it from the list.",
                      "fr": "Fichier introuvable ; vérifiez le chemin ou retirez-le de la liste."},
    "check_too_many_pixels": {
        "en": "Far too many pixels to load safely; scale it below 100 megapixels and add it again.",
        "fr": "Beaucoup trop de pixels pour la charger sans risque ; réduisez-la sous 100 mégapixels et ajoutez-la "
              "à nouveau.",
    },
    "check_not_an_image": {
        "en": "Not an image file (or a format that can't be read); remove it, or re-save it as JPEG or PNG.",
        "fr": "Pas un fichier image (ou un format illisible) ; retirez-le, ou réenregistrez-le en JPEG ou PNG.",
    },
    "check_damaged": {
        "en": "The file is damaged or incomplete ({err}); copy it again from the original, or re-export it.",
        "fr": "Le fichier est abîmé ou incomplet ({err}) ; copiez-le à nouveau depuis l'original, ou réexportez-le.",
    },
    "check_too_small": {
        "en": "Only {width}x{height} pixels; training at {resolution} px needs at least {half} px on the short side. "
              "Use a larger original.",
        "fr": "Seulement {width}x{height} pixels ; l'entraînement à {resolution} px demande au moins {half} px sur le "
              "petit côté. Utilisez un original plus grand.",
    },
    "check_low_resolution": {
        "en": "{width}x{height} is below {resolution} px on the short side; it will be enlarged and may look soft. "
              "A larger original is better.",
        "fr": "{width}x{height} est sous {resolution} px sur le petit côté ; elle sera agrandie et peut sembler floue. "
              "Un original plus grand vaut mieux.",
    },
    "check_cmyk": {
        "en": "Stored in CMYK (print colours); it will be converted to RGB and colours may shift. Re-save it as RGB "
              "for exact colours.",
        "fr": "Enregistrée en CMJN (couleurs d'impression) ; elle sera convertie en RVB et les couleurs peuvent "
              "changer. Réenregistrez-la en RVB pour des couleurs exactes.",
    },
    "check_alpha": {
        "en": "Has transparent areas; they will be filled with white. Use a photo with a real background if white "
              "is not wanted.",
        "fr": "A des zones transparentes ; elles seront remplies de blanc. Utilisez une photo avec un vrai fond si le "
              "blanc ne convient pas.",
    },
    "check_exif_rotated": {
        "en": "The camera stored it turned (EXIF orientation {orientation}); it will be rotated upright. Nothing to "
              "do.",
        "fr": "L'appareil l'a enregistrée tournée (orientation EXIF {orientation}) ; elle sera redressée. Rien à "
              "faire.",
    },
    "check_grayscale": {
        "en": "Black and white; the model will learn a colourless subject from it. Prefer colour photos unless that "
              "is intended.",
        "fr": "En noir et blanc ; le modèle en apprendra un sujet sans couleurs. Préférez des photos en couleur, sauf "
              "si c'est voulu.",
    },
    "check_blurry": {
        "en": "Looks blurry or featureless (sharpness {score:.0f}, below {threshold:.0f}); blurry photos teach the "
              "model blur. Replace it with a sharp one.",
        "fr": "Semble floue ou sans détails (netteté {score:.0f}, sous {threshold:.0f}) ; une photo floue apprend le "
              "flou au modèle. Remplacez-la par une photo nette.",
    },
    "check_near_duplicate": {
        "en": "Looks like {how} {other}; keep one of them, duplicates make the model copy that photo.",
        "fr": "Semble {how} {other} ; gardez-en une seule, les doublons font recopier cette photo au modèle.",
    },
    "check_report_errors": {"en": "Errors (these images are skipped):", "fr": "Erreurs (ces images sont écartées) :"},
    "check_report_warnings": {"en": "Warnings (these images are used):",
                              "fr": "Avertissements (ces images sont utilisées) :"},
    "check_report_issue": {"en": "  - {name}: {issue}", "fr": "  - {name} : {issue}"},
    "check_same_picture": {"en": "the same picture as", "fr": "la même image que"},
    "check_nearly_same_picture": {"en": "nearly the same picture as", "fr": "presque la même image que"},
    "check_changed": {"en": "Could not be read while preparing ({err}); check the file and prepare again.",
                      "fr": "Illisible pendant la préparation ({err}) ; vérifiez le fichier et préparez à nouveau."},
    "check_no_face": {
        "en": "No face found, yet the class is “{class_word}”; use photos where the face is visible (or crop this "
              "one on the face), or pick another class word if the subject is not a person.",
        "fr": "Aucun visage trouvé, alors que la classe est « {class_word} » ; utilisez des photos où le visage se "
              "voit (ou recadrez celle-ci sur le visage), ou choisissez un autre mot de classe si le sujet n'est pas "
              "une personne.",
    },
    "check_same_background": {
        "en": "Same background as {n} of the other photos; whatever is the same in every photo is learnt as part of "
              "the subject. Vary backgrounds, clothes and light.",
        "fr": "Même fond que {n} des autres photos ; ce qui est pareil sur toutes les photos est appris comme une "
              "partie du sujet. Variez les fonds, les vêtements et la lumière.",
    },
    # ------------------------------------------------------------------ captions.py
    "lint_bare_token": {
        "en": "Write `{token} {class_word}`, not `{token}` alone: the class word is what makes the likeness work "
              "(the number one mistake with these models).",
        "fr": "Écrivez `{token} {class_word}`, pas `{token}` seul : c'est le mot de classe qui fait la "
              "ressemblance (l'erreur numéro un avec ces modèles).",
    },
    # ------------------------------------------------------------------ concepts.py
    "sub_no_photos": {"en": "No photos found in {images}; add photos (or <token>/<class>/ folders of them).",
                      "fr": "Aucune photo trouvée dans {images} ; ajoutez des photos (ou des dossiers <token>/<class>/ "
                            "qui en contiennent)."},
    "sub_reg_missing": {
        "en": "The class images folder {folder} does not exist; check the path (or leave it empty to generate class "
              "images).",
        "fr": "Le dossier d'images de classe {folder} n'existe pas ; vérifiez le chemin (ou laissez-le vide pour "
              "générer les images de classe).",
    },
    "sub_reg_empty": {
        "en": "The class images folder {folder} holds no images; add class images (or <class>/ folders of them), or "
              "leave it empty to generate class images.",
        "fr": "Le dossier d'images de classe {folder} ne contient aucune image ; ajoutez des images de classe (ou des "
              "dossiers <class>/ qui en contiennent), ou laissez-le vide pour générer les images de classe.",
    },
    "sub_concept_no_images": {"en": "concepts[{n}]: no images in {folder}; add photos of {token} {class_word}.",
                              "fr": "concepts[{n}] : aucune image dans {folder} ; ajoutez des photos de {token} "
                                    "{class_word}."},
    "sub_concept_reg_empty": {
        "en": "concepts[{n}]: {folder} holds no images of {class_word} (at its root or in {class_word}/); add some, "
              "or remove its reg_images to generate class images.",
        "fr": "concepts[{n}] : {folder} ne contient aucune image de {class_word} (ni à sa racine ni dans "
              "{class_word}/) ; ajoutez-en, ou retirez son reg_images pour générer les images de classe.",
    },
    "sub_token_twice": {
        "en": "Two subjects use the token {token!r} ({first_token} {first_class}: {first_folder}; {token} "
              "{class_word}: {folder}); give each subject its own token, or put their photos in one folder.",
        "fr": "Deux sujets utilisent le jeton {token!r} ({first_token} {first_class} : {first_folder} ; {token} "
              "{class_word} : {folder}) ; donnez à chaque sujet son propre jeton, ou mettez leurs photos dans un seul "
              "dossier.",
    },
    "sub_tree_unset": {
        "en": "The images in {folder} need a token and a class word: set them, or move the images into "
              "<token>/<class>/ folders (e.g. effy/dog/).",
        "fr": "Les images de {folder} ont besoin d'un jeton et d'un mot de classe : indiquez-les, ou rangez les "
              "images dans des dossiers <token>/<class>/ (par ex. effy/dog/).",
    },
    # ------------------------------------------------------------------ config.py
    "cfg_unknown_preset": {"en": "Unknown preset {name!r}; choose one of: {names}.",
                           "fr": "Préréglage {name!r} inconnu ; choisissez l'un de : {names}."},
    "cfg_set": {"en": "Set {key}: {hint}.", "fr": "Indiquez {key} : {hint}."},
    "cfg_hint_model": {"en": "the base SD v1 checkpoint", "fr": "le modèle SD v1 de départ"},
    "cfg_hint_images": {"en": "the folder of subject photos", "fr": "le dossier des photos du sujet"},
    "cfg_hint_token": {"en": "a rare word such as ohwx", "fr": "un mot rare comme ohwx"},
    "cfg_hint_class_word": {"en": "e.g. person, dog, car", "fr": "par ex. person, dog, car"},
    "cfg_must_be": {"en": "{key} must be {what}, got {value!r}.", "fr": "{key} doit être {what}, pas {value!r}."},
    "cfg_range_between": {"en": "between {low} and {high}", "fr": "entre {low} et {high}"},
    "cfg_range_above_up_to": {"en": "above {low} and at most {high}", "fr": "supérieur à {low} et au plus {high}"},
    "cfg_range_strictly_between": {"en": "strictly between {low} and {high}",
                                   "fr": "strictement entre {low} et {high}"},
    "cfg_range_from_below": {"en": "at least {low} and below {high}", "fr": "au moins {low} et inférieur à {high}"},
    "cfg_devices_value": {"en": "devices must be a whole number from 1 (the GPUs to train on) or all, got {value!r}.",
                    "fr": "devices doit être un nombre entier à partir de 1 (les GPU à utiliser) ou all, pas "
                          "{value!r}."},
    "cfg_devices_graphs": {
        "en": "cuda_graphs works on one GPU only: set cuda_graphs to false to train on {devices} GPUs (each GPU "
              "then steps about 3 times slower, so several may be slower than one with the graphs), or set "
              "devices to 1.",
        "fr": "cuda_graphs ne fonctionne que sur un seul GPU : réglez cuda_graphs sur false pour entraîner sur "
              "{devices} GPU (chaque GPU fait alors ses pas environ 3 fois plus lentement : plusieurs peuvent être "
              "plus lents qu'un seul avec les graphes), ou réglez devices sur 1."},
    "cfg_devices_all_cpu": {"en": "devices all means every GPU; on the CPU, give a number of processes (e.g. 2).",
                            "fr": "devices all désigne tous les GPU ; sur le processeur, donnez un nombre de "
                                  "processus (par ex. 2)."},
    "cfg_multiple_of_64": {"en": "a multiple of 64 (512 for SD v1)", "fr": "un multiple de 64 (512 pour SD v1)"},
    "cfg_source_preset": {"en": "preset {name}", "fr": "préréglage {name}"},
    "cfg_source_device": {"en": "device defaults", "fr": "réglages de l'appareil"},
    "cfg_source_file": {"en": "config file {path}", "fr": "fichier de configuration {path}"},
    "cfg_source_settings": {"en": "settings", "fr": "réglages"},
    "cfg_source_overrides": {"en": "--set overrides", "fr": "réglages --set"},
    "cfg_what_preset": {"en": "preset", "fr": "préréglage"},
    "cfg_what_file": {"en": "config file", "fr": "fichier de configuration"},
    "cfg_file_missing": {"en": "The {what} {path} does not exist; check the path.",
                         "fr": "Le {what} {path} n'existe pas ; vérifiez le chemin."},
    "cfg_file_yaml": {"en": "The {what} {path} is not valid YAML ({reason}); fix it.",
                      "fr": "Le {what} {path} n'est pas du YAML valide ({reason}) ; corrigez-le."},
    "cfg_file_not_mapping": {"en": "The {what} {path} must hold `key: value` lines, not a {type}.",
                             "fr": "Le {what} {path} doit contenir des lignes `clé: valeur`, pas un {type}."},
    "cfg_override_form": {"en": "Write overrides as key=value (e.g. steps=1500), got: {bad}.",
                          "fr": "Écrivez les réglages sous la forme clé=valeur (par ex. steps=1500), pas : {bad}."},
    "cfg_override_unreadable": {"en": "Could not read the overrides {overrides}: {reason}.",
                                "fr": "Impossible de lire les réglages {overrides} : {reason}."},
    "cfg_unknown_setting": {"en": "{source}: unknown setting {key!r}{hint}",
                            "fr": "{source} : réglage {key!r} inconnu{hint}"},
    "cfg_did_you_mean": {"en": "; did you mean {name!r}?", "fr": " ; vouliez-vous dire {name!r} ?"},
    "cfg_see_settings": {"en": "; see sdtrainer/config.py for the settings.",
                         "fr": " ; la liste des réglages est dans sdtrainer/config.py."},
    "cfg_bad_value": {"en": "{source}: bad value for {key!r}: {reason}{choices}",
                      "fr": "{source} : valeur incorrecte pour {key!r} : {reason}{choices}"},
    "cfg_choose_one": {"en": " (choose one of: {names}).", "fr": " (choisissez l'un de : {names})."},
    "cfg_concepts_list": {"en": "{source}: concepts must be a list of subjects, e.g. {example} (got {value}).",
                          "fr": "{source} : concepts doit être une liste de sujets, par ex. {example} (pas "
                                "{value})."},
    "cfg_concept_entry": {
        "en": "{source}: concepts[{n}] must be a subject with token, class_word and images, e.g. {example} (got "
              "{value}).",
        "fr": "{source} : concepts[{n}] doit être un sujet avec token, class_word et images, par ex. {example} (pas "
              "{value}).",
    },
    "cfg_hint_images_or_concepts": {"en": "the folder of subject photos (or list the subjects under concepts)",
                                    "fr": "le dossier des photos du sujet (ou listez les sujets sous concepts)"},
    "cfg_token_one_word": {"en": "The token {token!r} must be one word without spaces (a rare word such as ohwx).",
                           "fr": "Le jeton {token!r} doit être un seul mot, sans espace (un mot rare comme ohwx)."},
    "cfg_cache_latents": {
        "en": "cache_latents=false is not supported: the VAE is frozen, so latents are always computed once before "
              "training. Remove the setting.",
        "fr": "cache_latents=false n'est pas pris en charge : le VAE est figé, les latents sont donc toujours "
              "calculés une fois avant l'entraînement. Retirez ce réglage.",
    },
    "cfg_preset_vram": {"en": "Preset {preset!r} has no VRAM figure; set required_free_gib.",
                        "fr": "Le préréglage {preset!r} n'a pas de besoin en VRAM connu ; réglez required_free_gib."},
    "cfg_concept_set": {"en": "concepts[{n}]: set {key}.", "fr": "concepts[{n}] : indiquez {key}."},
    "cfg_concept_token": {"en": "concepts[{n}]: the token {token!r} must be one word without spaces.",
                          "fr": "concepts[{n}] : le jeton {token!r} doit être un seul mot, sans espace."},
    "cfg_lora_text_encoder": {
        "en": "method lora trains a LoRA of the UNet only: set train_text_encoder to false (or method to full).",
        "fr": "la méthode lora n'entraîne qu'un LoRA de l'UNet : réglez train_text_encoder sur false (ou la méthode "
              "sur full)."},
    "cfg_lora_ema": {
        "en": "method lora keeps no EMA copy: set ema to false (or method to full).",
        "fr": "la méthode lora ne garde pas de copie EMA : réglez ema sur false (ou la méthode sur full)."},
    "cfg_lora_precision": {
        "en": "method lora trains its factors in fp32 beside a frozen base held in bf16 under bf16-mixed: set "
              "precision to bf16-mixed (or 16-mixed, 32), not bf16-true.",
        "fr": "la méthode lora entraîne ses facteurs en fp32 à côté d'une base figée gardée en bf16 avec bf16-mixed : "
              "réglez precision sur bf16-mixed (ou 16-mixed, 32), pas bf16-true."},
    "cfg_lora_format": {
        "en": "method lora writes kohya LoRA files, which are .safetensors: set save_format to safetensors.",
        "fr": "la méthode lora écrit des fichiers LoRA de kohya, en .safetensors : réglez save_format sur "
              "safetensors."},
    "cfg_lora_devices": {
        "en": "method lora trains on one GPU for now: set devices to 1 (a LoRA fits on small cards).",
        "fr": "la méthode lora s'entraîne sur un seul GPU pour l'instant : réglez devices sur 1 (un LoRA tient sur les "
              "petites cartes)."},
    # ------------------------------------------------------------------ sampling.py
    "gen_side": {
        "en": "{side} {value} is not usable: use a multiple of {multiple} between {multiple} and {max} "
              "(SD v1 works best at 512).",
        "fr": "{side} {value} ne convient pas : utilisez un multiple de {multiple} entre {multiple} et {max} "
              "(SD v1 donne le meilleur à 512).",
    },
    "gen_width": {"en": "width", "fr": "Largeur"},
    "gen_height": {"en": "height", "fr": "Hauteur"},
    "gen_steps": {"en": "steps must be between 1 and {max} (20-30 is usual), got {value}.",
                  "fr": "Le nombre d'étapes doit être entre 1 et {max} (20 à 30 en général), pas {value}."},
    "gen_batch": {"en": "batch size must be between 1 and {max}, got {value}.",
                  "fr": "Le nombre d'images doit être entre 1 et {max}, pas {value}."},
    "gen_cfg": {"en": "CFG scale must be between 1 and 30 (7 is usual), got {value}.",
                "fr": "L'échelle CFG doit être entre 1 et 30 (7 en général), pas {value}."},
    "gen_eta": {"en": "Eta must be between 0 and 1 (0: no added noise; leave it out for the sampler's default), "
                      "got {value}.",
                "fr": "Eta doit être entre 0 et 1 (0 : pas de bruit ajouté ; omettez-le pour la valeur du "
                      "sampler), pas {value}."},
    "gen_seed": {"en": "The seed must be a whole number from 0 to {max} (-1: a random one), got {value}.",
                 "fr": "La graine doit être un nombre entier de 0 à {max} (-1 : une au hasard), pas {value}."},
    "gen_unknown_sampler": {"en": "unknown sampler {name!r}; choose one of: {choices}",
                            "fr": "échantillonneur {name!r} inconnu ; choisissez l'un de : {choices}"},
    # ------------------------------------------------------------------ preflight.py: the report
    "indented": {"en": "{prefix}{text}", "fr": "{prefix}{text}"},  # a report line under a heading
    "gate_gpu_missing": {"en": "GPU {index}: not available", "fr": "GPU {index} : indisponible"},
    "gate_gpu": {"en": "GPU {index}: {name}", "fr": "GPU {index} : {name}"},
    "gate_memory": {"en": "  memory: {free:.1f} GiB free of {total:.1f} GiB",
                    "fr": "  mémoire : {free:.1f} Gio libres sur {total:.1f} Gio"},
    "gate_driver": {"en": "  driver: {driver}", "fr": "  pilote : {driver}"},
    "gate_no_processes": {"en": "  processes on this GPU: none", "fr": "  programmes sur ce GPU : aucun"},
    "gate_processes": {"en": "  processes on this GPU:", "fr": "  programmes sur ce GPU :"},
    "gate_process": {"en": "pid {pid} {name}{own} ({kind}, {used})", "fr": "pid {pid} {name}{own} ({kind}, {used})"},
    "gate_this_program": {"en": " (this program)", "fr": " (ce programme)"},
    "gate_used_unknown": {"en": "memory use unknown", "fr": "mémoire utilisée inconnue"},
    "gate_used_mib": {"en": "{mib} MiB", "fr": "{mib} Mio"},
    "gate_needs": {"en": "Preset {preset} needs {gib} GiB free.",
                   "fr": "Le préréglage {preset} demande {gib} Gio libres."},
    "gate_needs_each": {"en": "Preset {preset} needs {gib} GiB free on each of the {n} GPUs.",
                        "fr": "Le préréglage {preset} demande {gib} Gio libres sur chacun des {n} GPU."},
    "gate_ok": {"en": "OK: training can start.", "fr": "OK : l'entraînement peut commencer."},
    "gate_cpu_slow": {
        "en": "Training Stable Diffusion v1 on the CPU is impractical: one run takes days, where an NVIDIA GPU takes "
              "minutes to an hour. Use --device cpu only with the demo model.",
        "fr": "Entraîner Stable Diffusion v1 sur le processeur n'est pas raisonnable : un entraînement y prend des "
              "jours, contre quelques minutes à une heure sur une carte NVIDIA. N'utilisez --device cpu qu'avec le "
              "modèle de démonstration.",
    },
    "gate_refused": {"en": "Training cannot start:", "fr": "L'entraînement ne peut pas commencer :"},
    # ------------------------------------------------------------------ preflight.py: reasons for refusing
    "gate_no_index": {
        "en": "There is no GPU with index {index}: the driver sees {count} GPU(s) (indices 0 to {last}). "
              "Choose one of those indices.",
        "fr": "Il n'y a pas de GPU d'indice {index} : le pilote voit {count} GPU (indices 0 à {last}). "
              "Choisissez l'un de ces indices.",
    },
    "gate_on_gpu": {"en": "GPU {index}: {reason}", "fr": "GPU {index} : {reason}"},
    "gate_too_few_gpus": {
        "en": "devices is {asked}, but the driver sees {count} GPU(s): set devices to {count} or fewer, or to all.",
        "fr": "devices vaut {asked}, mais le pilote voit {count} GPU : réglez devices sur {count} ou moins, ou sur "
              "all.",
    },
    "gate_too_small": {
        "en": "The GPU ({name}) has {total:.1f} GiB in total; the {preset} preset needs a card with at least "
              "{min} GiB (24 GB, e.g. an RTX 3090 or 4090). {advice}",
        "fr": "La carte ({name}) a {total:.1f} Gio en tout ; le préréglage {preset} demande une carte d'au moins "
              "{min} Gio (24 Go, par ex. une RTX 3090 ou 4090). {advice}",
    },
    "gate_choose_smaller": {"en": "Choose a preset made for a smaller card.",
                            "fr": "Choisissez un préréglage fait pour une carte plus petite."},
    "gate_choose_preset": {"en": "Choose the {preset} preset (needs {gib} GiB free).",
                           "fr": "Choisissez le préréglage {preset} (il demande {gib} Gio libres)."},
    "gate_low_free": {
        "en": "Only {free:.1f} GiB free of {total:.1f} GiB; the {preset} preset needs {gib} GiB. {advice}",
        "fr": "Seulement {free:.1f} Gio libres sur {total:.1f} Gio ; le préréglage {preset} demande {gib} Gio. "
              "{advice}",
    },
    "gate_free_more": {"en": "{close} to free at least {missing:.1f} GiB more.",
                       "fr": "{close} pour libérer au moins {missing:.1f} Gio de plus."},
    "gate_close_or_preset": {"en": "{close} or choose the {preset} preset (needs {gib} GiB).",
                             "fr": "{close} ou choisissez le préréglage {preset} (il demande {gib} Gio)."},
    "gate_close_listed": {"en": "Close the programs listed above", "fr": "Fermez les programmes listés ci-dessus"},
    "gate_close_any": {
        "en": "Close programs that use the GPU (games, other AI tools, browsers with hardware acceleration)",
        "fr": "Fermez les programmes qui utilisent la carte (jeux, autres outils d'IA, navigateurs avec "
              "l'accélération matérielle)",
    },
    "gate_compute_process": {
        "en": "Another program is computing on this GPU: pid {pid} {name} ({used}). Close it, or wait until it "
              "finishes, then start again: two jobs on one card run out of memory.",
        "fr": "Un autre programme calcule sur cette carte : pid {pid} {name} ({used}). Fermez-le, ou attendez "
              "qu'il finisse, puis relancez : deux travaux sur une même carte manquent de mémoire.",
    },
    "gate_no_cuda": {"en": "No CUDA GPU was found: {cause}. The demo model can train on the CPU with --device cpu.",
                     "fr": "Aucune carte CUDA trouvée : {cause}. Le modèle de démonstration peut s'entraîner sur le "
                           "processeur."},
    "gate_cpu_torch": {
        "en": "this PyTorch is a CPU-only build. Training a real model needs an NVIDIA GPU and the CUDA build of "
              "PyTorch (delete the .venv folder and run the launcher again to reinstall it)",
        "fr": "ce PyTorch est une version pour processeur seul. Entraîner un vrai modèle demande une carte NVIDIA "
              "et la version CUDA de PyTorch (supprimez le dossier .venv et relancez le lanceur pour la "
              "réinstaller)",
    },
    "gate_cuda_unusable": {
        "en": "PyTorch (built for CUDA {build}) cannot use any GPU. Training a real model needs an NVIDIA GPU: "
              "check that `nvidia-smi` lists it, that the NVIDIA driver is recent enough, and that "
              "CUDA_VISIBLE_DEVICES does not hide it",
        "fr": "PyTorch (compilé pour CUDA {build}) ne peut utiliser aucune carte. Entraîner un vrai modèle demande "
              "une carte NVIDIA : vérifiez que `nvidia-smi` la liste, que le pilote NVIDIA est assez récent et que "
              "CUDA_VISIBLE_DEVICES ne la cache pas",
    },
    "gate_no_driver": {
        "en": "The NVIDIA driver was not found or could not be queried ({error}). Check that the NVIDIA driver is "
              "installed and that `nvidia-smi` lists the GPU (install or update the driver and restart if it does "
              "not), and that the nvidia-ml-py package is installed.",
        "fr": "Le pilote NVIDIA est introuvable ou ne répond pas ({error}). Vérifiez que le pilote NVIDIA est "
              "installé et que `nvidia-smi` liste la carte (sinon installez ou mettez à jour le pilote et "
              "redémarrez), et que le paquet nvidia-ml-py est installé.",
    },
    # ------------------------------------------------------------------ session.py: how a run ended
    "run_finished": {"en": "Finished {step} steps: {path}", "fr": "{step} étapes terminées : {path}"},
    "run_stopped": {"en": "Stopped at step {step} of {total}.", "fr": "Arrêté à l'étape {step} sur {total}."},
    "run_stopped_saved": {"en": "Stopped at step {step} of {total}; saved {path}.",
                          "fr": "Arrêté à l'étape {step} sur {total} ; enregistré dans {path}."},
    "run_exists": {"en": "{root} already holds a run: tick “Continue this run” (or use --resume) to go on with it, "
                         "or choose another run name.",
                   "fr": "{root} contient déjà un entraînement : cochez « Reprendre cet entraînement » (ou "
                         "--resume) pour le poursuivre, ou choisissez un autre nom."},
    "run_nothing_to_resume": {"en": "Nothing to resume in {root}: it holds no saved training state. Untick "
                                    "“Continue this run” to start a new run there.",
                              "fr": "Rien à continuer dans {root} : aucun état d'entraînement enregistré. Décochez "
                                    "« Reprendre cet entraînement » pour y lancer un nouvel entraînement."},
    "run_failed": {"en": "Training failed: {kind}: {error}", "fr": "L'entraînement a échoué : {kind} : {error}"},
    "run_gate_refused": {"en": "Training cannot start: {reasons} (the log has the GPU check's full report).",
                         "fr": "L'entraînement ne peut pas commencer : {reasons} (le journal contient le rapport complet "
                               "de la vérification du GPU)."},
    "run_busy": {"en": "A training run is already active ({run_dir}, {status}); stop it or wait until it ends.",
                 "fr": "Un entraînement est déjà en cours ({run_dir}, {status}) ; arrêtez-le ou attendez la fin."},
    "run_started_twice": {"en": "This session has already been started; create a new one.",
                          "fr": "Cette session a déjà été lancée ; créez-en une nouvelle."},
    "run_oom": {
        "en": "Out of GPU memory at step {step} with the {preset} preset: {advice}, and close other programs that "
              "use the GPU.{saved}",
        "fr": "Mémoire de la carte épuisée à l'étape {step} avec le préréglage {preset} : {advice}, et fermez les "
              "autres programmes qui utilisent la carte.{saved}",
    },
    "run_oom_lower": {"en": "choose the {preset} preset (needs about {gib} GiB free)",
                      "fr": "choisissez le préréglage {preset} (il demande environ {gib} Gio libres)"},
    "run_oom_graphs": {
        "en": "set cuda_graphs to false (about 1.5 GiB less, but steps about 3 times slower)",
        "fr": "réglez cuda_graphs sur false (environ 1,5 Gio de moins, mais des pas environ 3 fois plus lents)",
    },
    "run_oom_smallest": {
        "en": "lower the resolution or the batch size, or turn off ema and train_text_encoder",
        "fr": "baissez la résolution ou la taille de lot, ou désactivez l'EMA et l'entraînement de l'encodeur de "
              "texte",
    },
    "run_oom_saved": {"en": " The state at step {step} was saved; resume from {root}.",
                      "fr": " L'état à l'étape {step} est enregistré ; reprenez depuis {root}."},
    "run_no_bitsandbytes": {
        "en": "The adamw8bit optimizer and bf16-true weights need bitsandbytes, which is missing from this Python: "
              "run `pip install bitsandbytes` in the app's environment (.venv), or choose the 24gb preset.",
        "fr": "L'optimiseur adamw8bit et les poids bf16-true demandent bitsandbytes, absent de ce Python : lancez "
              "`pip install bitsandbytes` dans l'environnement de l'application (.venv), ou choisissez le préréglage "
              "24gb.",
    },
    "run_no_class_images": {
        "en": "{token} {class_word} has no class images: give it a reg_images folder (or a {class_word}/ folder in "
              "reg_images) or class_images above 0, or set prior_loss_weight 0.",
        "fr": "{token} {class_word} n'a pas d'images de classe : donnez-lui un dossier reg_images (ou un dossier "
              "{class_word}/ dans reg_images) ou class_images au-dessus de 0, ou réglez prior_loss_weight sur 0.",
    },
    # ------------------------------------------------------------------ trainer/: what a run says in its log
    "train_loaded": {"en": "Loaded {name} ({architecture}).", "fr": "{name} chargé ({architecture})."},
    "train_warning": {"en": "Warning: {warning}", "fr": "Attention : {warning}"},
    "train_photos_of": {"en": "{token} {class_word}: {report}", "fr": "{token} {class_word} : {report}"},
    "train_class_images_making": {
        "en": "Class images: making {count} of '{class_word}' in {folder}, {batch} at a time (existing ones kept).",
        "fr": "Images de classe : {count} de « {class_word} » à faire dans {folder}, {batch} à la fois (celles qui "
              "existent sont gardées).",
    },
    "train_class_images_made": {"en": "Class images: {made} of {count} of '{class_word}' there ({seconds:.0f} s).",
                                "fr": "Images de classe : {made} sur {count} de « {class_word} » prêtes "
                                      "({seconds:.0f} s)."},
    "train_final_kept": {
        "en": "The previous final file {old} (step {step}) is kept as {new}: this run writes its own final file.",
        "fr": "Le fichier final précédent {old} (étape {step}) est gardé sous le nom {new} : cet entraînement écrit "
              "son propre fichier final."},
    "train_cached": {"en": "Cached {instances} instance and {classes} class latents.",
                     "fr": "Latents en mémoire : {instances} d'images du sujet et {classes} d'images de classe."},
    "train_processes_gpu": {
        "en": "Starting {processes} processes (one per GPU): each step trains on {processes} x {batch} images "
              "(x {accum} accumulated).",
        "fr": "Lancement de {processes} processus (un par carte) : chaque étape entraîne sur {processes} x {batch} "
              "images (x {accum} accumulées).",
    },
    "train_processes_cpu": {
        "en": "Starting {processes} processes (on the CPU): each step trains on {processes} x {batch} images "
              "(x {accum} accumulated).",
        "fr": "Lancement de {processes} processus (sur le processeur) : chaque étape entraîne sur {processes} x "
              "{batch} images (x {accum} accumulées).",
    },
    "train_processes_agree": {"en": "All {processes} processes ended with the same weights.",
                              "fr": "Les {processes} processus ont fini avec les mêmes poids."},
    "train_processes_changed": {
        "en": "This run's state was saved on {before} process(es), and it continues on {now}: from step {step} on, "
              "each step averages {images_now} instance images (before: {images_before}), drawn as a {now}-process "
              "run draws them, at the same learning rate. Its weights will differ from those of a run on {before} "
              "process(es) all along; resume on {before} for exactly those.",
        "fr": "L'état de cet entraînement a été enregistré sur {before} processus, et il continue sur {now} : dès "
              "l'étape {step}, chaque étape fait la moyenne de {images_now} images du sujet (avant : "
              "{images_before}), tirées comme le fait un entraînement sur {now} processus, au même taux "
              "d'apprentissage. Ses poids différeront tout du long de ceux d'un entraînement sur {before} "
              "processus ; reprenez sur {before} pour obtenir exactement ceux-là.",
    },
    "train_cuda_graphs": {
        "en": "Capturing the UNet's step as CUDA graphs: the first step takes a few seconds more (3-16 s on an H200; "
              "once per run).",
        "fr": "Capture de l'étape du UNet en graphes CUDA : la première étape prend quelques secondes de plus "
              "(3 à 16 s sur une H200 ; une fois par entraînement).",
    },
    "train_compiling": {"en": "Compiling the UNet: the first step takes a minute or two (once per run).",
                        "fr": "Compilation du UNet : la première étape prend une minute ou deux (une fois par "
                              "entraînement)."},
    "train_paused": {"en": "Paused after step {step}.", "fr": "En pause après l'étape {step}."},
    "train_resumed": {"en": "Resumed.", "fr": "Reprise."},
    "train_stopping": {"en": "Stopping after step {step}: saving a model file and the training state.",
                       "fr": "Arrêt après l'étape {step} : enregistrement d'un fichier modèle et de l'état "
                             "d'entraînement."},
    "train_stopping_before_start": {"en": "Stopping before step 1: nothing trained, nothing to save.",
                                    "fr": "Arrêt avant l'étape 1 : rien d'entraîné, rien à enregistrer."},
    "train_diverged": {
        "en": "Training diverged at step {step}: the loss is no longer a number (NaN or infinite), and so are the weights "
              "from that step on. The files saved before step {step} are intact. Start a new run with a lower learning "
              "rate (this one had {lr:g}).",
        "fr": "L'entraînement a divergé au pas {step} : la perte n'est plus un nombre (NaN ou infini), les poids non plus "
              "à partir de ce pas. Les fichiers enregistrés avant le pas {step} sont intacts. Lancez un nouvel "
              "entraînement avec un taux d'apprentissage plus bas (celui-ci avait {lr:g})."},
    "train_oom_not_saved": {"en": "Could not save after running out of memory: {error}",
                            "fr": "Impossible d'enregistrer après le manque de mémoire : {error}"},
    # ------------------------------------------------------------------ cli.py
    "cli_model_missing": {"en": "model file not found: {path}", "fr": "fichier modèle introuvable : {path}"},
    "cli_run_dir_is_file": {
        "en": "{run_dir} is a file, not a folder: choose a new folder for the run (e.g. outputs/joe).",
        "fr": "{run_dir} est un fichier, pas un dossier : choisissez un nouveau dossier pour l'entraînement (par ex. "
              "outputs/joe).",
    },
    "cli_run_dir_unwritable": {
        "en": "Cannot create the run folder {run_dir} ({reason}); choose a folder you can write to, e.g. outputs/joe.",
        "fr": "Impossible de créer le dossier d'entraînement {run_dir} ({reason}) ; choisissez un dossier où vous "
              "pouvez écrire, par ex. outputs/joe.",
    },
    # ------------------------------------------------------------------ meter.py
    "meter_best_fit": {
        "en": "step {step}: the best subject fit of the run ({fit:.2f}; {last_fit:.2f} at step {last})",
        "fr": "étape {step} : le meilleur ajustement au sujet de l'entraînement ({fit:.2f} ; {last_fit:.2f} à "
              "l'étape {last})"},
    "meter_still_improving": {
        "en": "step {step}: the last checkpoint, whose subject fit is still improving ({fit:.2f}): if it does not look "
              "like the subject yet, train longer",
        "fr": "étape {step} : le dernier modèle, dont l'ajustement au sujet s'améliore encore ({fit:.2f}) : si le "
              "sujet n'est pas encore ressemblant, entraînez plus longtemps"},
    "meter_only_one": {"en": "step {step}: the run's only checkpoint, nothing to compare it with: set save_every to "
                             "save more often",
                       "fr": "étape {step} : le seul modèle de l'entraînement, rien à quoi le comparer : réglez "
                             "save_every pour en enregistrer plus souvent"},
    "meter_no_step": {
        "en": "{path} does not say its training step (no `steps` in its metadata): the meter measures the files "
              "sdtrainer's training writes.",
        "fr": "{path} ne dit pas son étape d'entraînement (pas de `steps` dans ses métadonnées) : la mesure porte sur "
              "les fichiers qu'écrit l'entraînement de sdtrainer.",
    },
    "meter_not_a_run": {
        "en": "{run_dir} is not a run folder (it has no config.yaml); give the folder a training wrote, e.g. "
              "outputs/runs/joe.",
        "fr": "{run_dir} n'est pas un dossier d'entraînement (pas de config.yaml) ; donnez le dossier qu'un "
              "entraînement a écrit, par ex. outputs/runs/joe.",
    },
    "meter_no_files": {
        "en": "{run_dir} has no model files yet (checkpoints/ or {name}-final): nothing to measure.",
        "fr": "{run_dir} n'a pas encore de fichier modèle (checkpoints/ ou {name}-final) : rien à mesurer.",
    },
    "meter_base_missing": {
        "en": "The run's base model {path} is not there any more: give its new place with "
              "`python -m sdtrainer meter {run_dir} --model PATH`.",
        "fr": "Le modèle de base de l'entraînement, {path}, n'est plus là : donnez son nouvel emplacement avec "
              "`python -m sdtrainer meter {run_dir} --model CHEMIN`."},
    "meter_earlier_definition": {
        "en": "The scores in {file} before this resume were measured by an earlier version of the meter and do not "
              "compare with today's: they are left out. `python -m sdtrainer meter {run_dir}` measures those "
              "checkpoints again.",
        "fr": "Les mesures de {file} d'avant cette reprise viennent d'une version antérieure de l'outil de mesure et "
              "ne se comparent pas à celles d'aujourd'hui : elles sont laissées de côté. "
              "`python -m sdtrainer meter {run_dir}` mesure à nouveau ces fichiers modèles."},
    "meter_cost": {"en": "Meter: {seconds:.1f} s spent scoring the checkpoints (see {file}).",
                   "fr": "Mesures : {seconds:.1f} s passées à évaluer les fichiers modèles (voir {file})."},
    # ------------------------------------------------------------------ ui/guard.py, webui.py
    "server_foreign_host": {
        "en": "sdtrainer answers only requests addressed to this computer (127.0.0.1 or localhost, or a name given "
              "with --listen or --allow-host); this one names another host, as a web page trying DNS rebinding "
              "would. To reach the app by this name, start it with --allow-host NAME.",
        "fr": "sdtrainer ne répond qu'aux requêtes adressées à cet ordinateur (127.0.0.1 ou localhost, ou un nom "
              "donné avec --listen ou --allow-host) ; celle-ci nomme un autre hôte, comme le ferait une page web "
              "qui tente un « DNS rebinding ». Pour joindre l'application sous ce nom, lancez-la avec "
              "--allow-host NOM.",
    },
    "server_auth_form": {"en": "--auth must be USER:PASSWORD, both non-empty (e.g. --auth joe:s3cret).",
                         "fr": "--auth doit être UTILISATEUR:MOT_DE_PASSE, tous deux non vides (par ex. --auth "
                               "joe:s3cret)."},
    "server_listen_needs_auth": {
        "en": "--listen makes the app reachable from other computers, so it needs a login: add --auth USER:PASSWORD "
              "(or leave out --listen to stay on this computer).",
        "fr": "--listen rend l'application joignable depuis d'autres ordinateurs, elle demande donc un identifiant : "
              "ajoutez --auth UTILISATEUR:MOT_DE_PASSE (ou retirez --listen pour rester sur cet ordinateur).",
    },
    "server_port_range": {"en": "--port must be between 1 and 65535, got {port}.",
                          "fr": "--port doit être entre 1 et 65535, pas {port}."},
    "server_port_busy": {
        "en": "Port {port} is already in use (by another program, or sdtrainer running already); choose another one "
              "with --port {next}, or leave out --port.",
        "fr": "Le port {port} est déjà utilisé (par un autre programme, ou par sdtrainer déjà lancé) ; choisissez-en "
              "un autre avec --port {next}, ou retirez --port.",
    },
    "server_ports_busy": {"en": "Ports {first}-{last} are all in use; choose a free one with --port.",
                          "fr": "Les ports {first} à {last} sont tous occupés ; choisissez-en un libre avec --port."},
}
