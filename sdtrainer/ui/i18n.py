"""Every word the web page itself shows, in English and French, and how each request's language is found.

Static text (labels, help, buttons, Markdown) goes through Gradio's own `gr.I18n`, translated in
the browser:

    T = translations()                    # gr.I18n(en=..., fr=...), passed to launch(i18n=T)
    gr.Button(T("te_generate"))

Text the server writes (status lines, warnings, errors) uses the request's language:

    say = Say(request_lang(request, default="fr"))
    warn(say("warn_caption_no_token", token="ohwx", class_word="person"))   # a toast
    say.message(state.message)            # a core module's Message (sdtrainer.messages) in that language

Core errors are raised with a Message (CheckpointError, DatasetError, ...) and shown in the page's language by
`with say.errors(...)`; an error raised with a library's own text is shown as "Impossible : <text>". What it raises,
a SaidError, keeps the message's key, so that sdtrainer.ui.common.with_notes can also show it under its field.

Two catalogues, one rule: STRINGS holds what only this web page says (labels, help, buttons, its status
lines, UIError keys); what the core says to people (its errors, reports, image checks, the prompt lint) is
sdtrainer.messages.MESSAGES, said here through `Say.message`, never copied into STRINGS. No key is in both.

The language is the browser's, unless the user picked one with the switch at the top of the page
(remembered in the browser) or the server was started with --lang. The page tells the server which
one it shows through the `sdtrainer_lang` cookie, set by language_js; with_locale_script makes Gradio's own
strings follow the same choice (the page is drawn again when the user switches).
"""
import re
from contextlib import contextmanager

import gradio as gr

from sdtrainer.messages import LANGUAGES, Message, in_language, message_of, say_in

COOKIE = "sdtrainer_lang"
STORAGE_KEY = "sdtrainer-lang"


class UIError(Exception):
    """A problem the user can fix, named by its message key (translated where it is shown)."""

    def __init__(self, key: str, **fmt):
        super().__init__(key)
        self.key, self.fmt = key, fmt


class SaidError(gr.Error):
    """The gr.Error of a user's mistake, in the page's language, with the key of its message (a UIError's or a core
    Message's; None for a library's text): FieldNotes shows it under the field it is about."""

    def __init__(self, text: str, key: str | None):
        super().__init__(text, print_exception=False)
        self.key = key


def text(key: str, lang: str, **fmt) -> str:
    """The message `key` in `lang` (English if missing there), with `{name}` fields filled."""
    message = in_language(STRINGS[key], lang)
    return message.format(**fmt) if fmt else message


def translations() -> gr.I18n:
    return gr.I18n(**{lang: {key: in_language(entry, lang) for key, entry in STRINGS.items()} for lang in LANGUAGES})


def normalize(lang: str | None) -> str | None:
    """'fr-FR' -> 'fr'; None for a language we do not have."""
    short = (lang or "").strip().lower()[:2]
    return short if short in LANGUAGES else None


def request_lang(request: gr.Request | None, default: str | None = None) -> str:
    """Cookie set by the page, else the server's --lang, else the browser's Accept-Language, else English."""
    if request is None:
        return default or "en"
    cookies = getattr(request, "cookies", None) or {}
    accepted = (request.headers.get("accept-language") or "").split(",")[0] if request.headers else ""
    return normalize(cookies.get(COOKIE)) or normalize(default) or normalize(accepted) or "en"


class Say:
    """Messages in one language: say(key, **fields); `with say.errors(...)` shows user errors."""

    def __init__(self, lang: str):
        self.lang = lang

    def __call__(self, key: str, **fmt) -> str:
        return text(key, self.lang, **fmt)

    def message(self, message: str) -> str:
        """A core module's message (a sdtrainer.messages.Message) in this language; plain text as it is."""
        return say_in(message, self.lang)

    @contextmanager
    def errors(self, *user_errors: type[Exception]):
        """Turn UIError, and the given exception types (translated when raised with a Message), into SaidError.

        The message is for the page: the console gets no traceback (a user's mistake is not the app's crash)."""
        try:
            yield
        except UIError as e:
            raise SaidError(self(e.key, **e.fmt), e.key) from None
        except user_errors as e:
            message = message_of(e)
            if isinstance(message, Message):
                raise SaidError(self.message(message), message.key) from None
            raise SaidError(self("err_detail", error=message), None) from None


def warn(text: str) -> None:
    """A warning toast. Toasts show text as it is, so `code` marks (which our Markdown messages use) become
    quotes."""
    gr.Warning(re.sub(r"`([^`]*)`", r"“\1”", text))


def language_js(default: str | None) -> tuple[str, str]:
    """(on page load, on switch) JavaScript: pick the language, tell Gradio's i18n and the server."""
    apply = f"""
    const apply = async (lang) => {{
      document.cookie = "{COOKIE}=" + lang + "; path=/; max-age=31536000; SameSite=Lax";
      const core = performance.getEntriesByType("resource").map((e) => e.name)
        .find((name) => /\\/assets\\/core-[\\w-]+\\.js$/.test(name));
      if (core) {{ try {{ (await import(core)).changeLocale(lang); }} catch (err) {{ console.warn(err); }} }}
      return lang;
    }};"""
    # in parentheses: `a || b || c ? x : y` reads as `(a || b || c) ? x : y`, which made every page French
    browser = '((navigator.language || "en").toLowerCase().startsWith("fr") ? "fr" : "en")'
    on_load = f"""async () => {{{apply}
      return await apply(localStorage.getItem("{STORAGE_KEY}") || "{normalize(default) or ''}" || {browser});
    }}"""
    on_switch = f"""async (lang) => {{{apply}
      localStorage.setItem("{STORAGE_KEY}", lang);
      await apply(lang);
      location.reload();  // Gradio's own strings follow its locale only when drawn: draw everything again
      return lang;
    }}"""
    return on_load, on_switch


def with_locale_script(page: bytes, default: str | None = None) -> bytes:
    """The app's HTML page with a first script that gives Gradio the chosen language as the browser's: Gradio picks
    its locale (its own strings: "Drop File Here"...) from navigator.language once, before anything of ours runs."""
    script = f"""<script>(() => {{ try {{
      const saved = localStorage.getItem("{STORAGE_KEY}")
        || (document.cookie.match(/(?:^|; ){COOKIE}=(\\w+)/) || [])[1] || "{normalize(default) or ''}";
      if (saved === "en" || saved === "fr") {{
        Object.defineProperty(navigator, "language", {{get: () => saved}});
        Object.defineProperty(navigator, "languages", {{get: () => [saved]}});
      }}
    }} catch (err) {{ console.warn(err); }} }})();</script>"""
    head = page.find(b"<head>")
    if head < 0 or b"window.gradio_config" not in page:
        return page
    return page[:head + len(b"<head>")] + script.encode() + page[head + len(b"<head>"):]




# Keys are grouped by where they appear: app_ (header), ds_ (Dataset tab), tr_/cfg_ (Training),
# te_ (Test), pr_ (Pruning), err_/warn_/msg_ (server messages), issue_ (image checks).
# `{name}` fields are filled on the server; text used as static labels has none.
STRINGS: dict[str, dict[str, str]] = {
    # ------------------------------------------------------------------ header
    "app_title": {
        "en": "# sdtrainer\nTeach Stable Diffusion v1 a new subject from a handful of photos: "
              "**1. Dataset** → **2. Training** → **3. Test** (pick the best step) → **4. Pruning** "
              "(a small file for AUTOMATIC1111 / ComfyUI).",
        "fr": "# sdtrainer\nApprenez un nouveau sujet à Stable Diffusion v1 avec quelques photos : "
              "**1. Jeu de données** → **2. Entraînement** → **3. Test** (choisir la meilleure étape) → "
              "**4. Élagage** (un fichier léger pour AUTOMATIC1111 / ComfyUI).",
    },
    "refresh_models": {"en": "⟳ Refresh models", "fr": "⟳ Actualiser les modèles"},
    "demo_banner": {
        "en": "⚠ **Demo mode: no Stable Diffusion checkpoint in the models folder.** The app made a tiny model "
              "with random weights so that every button works, but **its images are noise**. Put a real SD v1 "
              "checkpoint (for example `v1-5-pruned-emaonly.safetensors`) into this folder, then press "
              "**⟳ Refresh models**:",
        "fr": "⚠ **Mode démonstration : aucun modèle Stable Diffusion dans le dossier des modèles.** L'application "
              "a créé un petit modèle aux poids aléatoires pour que tous les boutons fonctionnent, mais **ses "
              "images sont du bruit**. Déposez un vrai modèle SD v1 (par exemple "
              "`v1-5-pruned-emaonly.safetensors`) dans ce dossier, puis cliquez sur **⟳ Actualiser les modèles** :",
    },
    "cpu_notice": {
        "en": "No NVIDIA GPU found: everything runs on the CPU. That is fine for the demo model; training a real "
              "model on a CPU would take days.",
        "fr": "Aucune carte NVIDIA détectée : tout tourne sur le processeur. C'est suffisant pour le modèle de "
              "démonstration ; entraîner un vrai modèle sur processeur prendrait des jours.",
    },
    "tab_dataset": {"en": "1. Dataset", "fr": "1. Jeu de données"},
    "tab_training": {"en": "2. Training", "fr": "2. Entraînement"},
    "tab_test": {"en": "3. Test", "fr": "3. Test"},
    "tab_pruning": {"en": "4. Pruning", "fr": "4. Élagage"},
    "stop": {"en": "■ Stop", "fr": "■ Arrêter"},
    # ------------------------------------------------------------------ Dataset tab
    "ds_intro": {
        "en": "A **project** holds the photos of one subject with its token and class word, or of several subjects "
              "trained together (a couple, a person and their dog): **+ Add subject** gives each its own token, class "
              "word and photos. Use **5 to 20 photos** per subject, and **vary backgrounds, clothes, light and "
              "angles**: whatever is the same in every photo is learnt as part of the subject.",
        "fr": "Un **projet** réunit les photos d'un sujet, son jeton et son mot de classe, ou de plusieurs sujets "
              "entraînés ensemble (un couple, une personne et son chien) : **+ Ajouter le sujet** donne à chacun son "
              "jeton, son mot de classe et ses photos. Utilisez **5 à 20 photos** par sujet et **variez les fonds, "
              "les vêtements, la lumière et les angles** : tout ce qui est identique sur toutes les photos est "
              "appris comme faisant partie du sujet.",
    },
    "ds_project": {"en": "Project", "fr": "Projet"},
    "ds_project_info": {"en": "Pick a project, or create one on the right.",
                        "fr": "Choisissez un projet, ou créez-en un à droite."},
    "ds_new_name": {"en": "New project name", "fr": "Nom du nouveau projet"},
    "ds_new_name_placeholder": {"en": "e.g. joe", "fr": "par ex. joe"},
    "ds_create": {"en": "+ Create project", "fr": "+ Créer le projet"},
    "ds_subject": {"en": "Subject", "fr": "Sujet"},
    "ds_subject_info": {"en": "The photos, captions and class images below are this subject's.",
                        "fr": "Les photos, légendes et images de classe ci-dessous sont celles de ce sujet."},
    "ds_new_token": {"en": "Another subject: its token", "fr": "Un autre sujet : son jeton"},
    "ds_new_token_placeholder": {"en": "e.g. effy", "fr": "par ex. effy"},
    "ds_new_class": {"en": "Its class word", "fr": "Son mot de classe"},
    "ds_new_class_placeholder": {"en": "e.g. dog", "fr": "par ex. dog"},
    "ds_add_subject": {"en": "+ Add subject", "fr": "+ Ajouter le sujet"},
    "ds_remove_subject": {"en": "✖ Remove subject", "fr": "✖ Retirer le sujet"},
    "ds_subject_heading": {"en": "### Token and class", "fr": "### Jeton et classe"},
    "ds_token": {"en": "Token", "fr": "Jeton"},
    "ds_token_info": {
        "en": "A short, rare word that will stand for your subject, e.g. ohwx. Prompts will say “ohwx person”.",
        "fr": "Un mot court et rare qui désignera votre sujet, par ex. ohwx. Les prompts diront « ohwx person ».",
    },
    "ds_token_placeholder": {"en": "ohwx", "fr": "ohwx"},
    "ds_class": {"en": "Class word", "fr": "Mot de classe"},
    "ds_class_info": {
        "en": "What the subject is: person, man, woman, dog, cat, car… Always write it right after the token.",
        "fr": "Ce qu'est le sujet, en anglais : person, man, woman, dog, cat, car… Toujours juste après le jeton.",
    },
    "ds_resolution": {"en": "Training resolution (px)", "fr": "Résolution d'entraînement (px)"},
    "ds_resolution_info": {"en": "512 for SD v1; 64 is enough for the demo model.",
                           "fr": "512 pour SD v1 ; 64 suffit pour le modèle de démonstration."},
    "ds_save_settings": {"en": "✔ Save token and class", "fr": "✔ Enregistrer jeton et classe"},
    "ds_photos_heading": {"en": "### Photos of the subject", "fr": "### Photos du sujet"},
    "ds_upload": {"en": "Drop photos here (many at once)", "fr": "Déposez les photos ici (plusieurs à la fois)"},
    "ds_crop": {"en": "Crop to a square", "fr": "Recadrage au carré"},
    "ds_crop_info": {
        "en": "“On the face” keeps the face in frame (the center is used when no face is found).",
        "fr": "« Sur le visage » garde le visage dans le cadre (le centre est utilisé si aucun visage n'est trouvé).",
    },
    "crop_center": {"en": "Center", "fr": "Centre"},
    "crop_face": {"en": "On the face", "fr": "Sur le visage"},
    "crop_start": {"en": "Top / left edge", "fr": "Bord haut / gauche"},
    "crop_end": {"en": "Bottom / right edge", "fr": "Bord bas / droit"},
    "ds_prepare": {"en": "✂ Prepare images", "fr": "✂ Préparer les images"},
    "ds_gallery": {"en": "Prepared images (click one to caption or remove it)",
                   "fr": "Images préparées (cliquez sur une image pour la légender ou la retirer)"},
    "ds_report": {"en": "Check report (every image, every warning)",
                  "fr": "Rapport de vérification (chaque image, chaque avertissement)"},
    "ds_selected": {"en": "Selected image", "fr": "Image sélectionnée"},
    "ds_no_warnings": {"en": "No warning for this image.", "fr": "Aucun avertissement pour cette image."},
    "ds_caption": {"en": "Caption training gives it", "fr": "Légende utilisée à l'entraînement"},
    "ds_caption_info": {
        "en": "Edit and save to write a .txt beside the image; empty it and save to go back to the file name or "
              "“token class”. Without a .txt, text after @ in the file name is a template (S = token, C = class: "
              "img@S_at_the_beach_C.jpg). Include the token AND the class word, e.g. “ohwx person at the beach”.",
        "fr": "Modifiez et enregistrez pour écrire un .txt à côté de l'image ; videz et enregistrez pour revenir "
              "au nom du fichier ou à « jeton classe ». Sans .txt, le texte après @ dans le nom du fichier est un "
              "modèle (S = jeton, C = classe : img@S_at_the_beach_C.jpg). Mettez le jeton ET le mot de classe, "
              "par ex. « ohwx person at the beach ».",
    },
    "ds_caption_from_txt": {"en": "From its .txt file.", "fr": "Tirée de son fichier .txt."},
    "ds_caption_from_template": {"en": "From the @ template in its file name (S = {token}, C = {class_word}).",
                                 "fr": "Tirée du modèle @ de son nom de fichier (S = {token}, C = {class_word})."},
    "ds_caption_from_file_name": {"en": "From its file name, which holds the token {token}.",
                                  "fr": "Tirée de son nom de fichier, qui contient le jeton {token}."},
    "ds_caption_from_default": {"en": "The default, “{token} {class_word}”: no .txt, no @ template.",
                                "fr": "Par défaut, « {token} {class_word} » : ni .txt, ni modèle @."},
    "ds_save_caption": {"en": "✔ Save caption", "fr": "✔ Enregistrer la légende"},
    "ds_remove": {"en": "✖ Remove this image", "fr": "✖ Retirer cette image"},
    "ds_recrop": {"en": "Crop this image again", "fr": "Recadrer cette image"},
    "ds_recrop_info": {"en": "From its original photo; kept when you prepare the images again.",
                       "fr": "Depuis la photo d'origine ; conservé si vous préparez à nouveau les images."},
    "ds_recrop_button": {"en": "⟲ Recrop", "fr": "⟲ Recadrer"},
    "ds_reg_heading": {"en": "Regularization images (class prior)",
                       "fr": "Images de régularisation (a priori de la classe)"},
    "ds_reg_help": {
        "en": "Pictures of the bare class, e.g. 200 pictures of “person”. Training on them next to your photos "
              "is *prior preservation*: without it, every “person” the model draws drifts towards your "
              "subject. Import your own, or generate them with the base model you will train.",
        "fr": "Des images de la classe seule, par ex. 200 images de « person ». S'entraîner aussi sur elles, "
              "c'est la *préservation de l'a priori* : sans elle, toute « person » dessinée par le modèle finit "
              "par ressembler à votre sujet. Importez les vôtres, ou générez-les avec le modèle de base.",
    },
    "ds_reg_upload": {"en": "Import class images", "fr": "Importer des images de classe"},
    "ds_reg_folder": {"en": "…or a folder on this computer", "fr": "…ou un dossier de cet ordinateur"},
    "ds_reg_folder_info": {"en": "Its full path, in models/, outputs/ or a folder given with --allow-dir, e.g. "
                                 "/home/joe/sdtrainer/outputs/person; every image in it is squared and copied.",
                           "fr": "Son chemin complet, dans models/, outputs/ ou un dossier donné avec --allow-dir, "
                                 "par ex. /home/joe/sdtrainer/outputs/person ; chaque image est recadrée et "
                                 "copiée."},
    "ds_reg_import_folder": {"en": "Import the folder", "fr": "Importer le dossier"},
    "ds_reg_model": {"en": "Base model to generate with", "fr": "Modèle de base pour la génération"},
    "ds_reg_count": {"en": "How many", "fr": "Combien"},
    "ds_reg_count_info": {
        "en": "100-200 is usual. Stopping keeps what was made; generating again continues from there.",
        "fr": "100 à 200 en général. Arrêter conserve ce qui est fait ; relancer reprend là où c'était.",
    },
    "ds_reg_generate": {"en": "Generate class images", "fr": "Générer les images de classe"},
    "ds_reg_gallery": {"en": "Class images (the first 24)", "fr": "Images de classe (les 24 premières)"},
    "ds_reg_count_text": {"en": "{n} class images of “{class_word}” in the project.",
                          "fr": "{n} images de classe « {class_word} » dans le projet."},
    # token advice
    "adv_enter_token": {"en": "Enter a token: a short, rare word that will stand for the subject (e.g. `ohwx`).",
                        "fr": "Saisissez un jeton : un mot court et rare qui désignera le sujet (par ex. `ohwx`)."},
    "adv_count_one": {"en": "`{token}` is a single CLIP token: good.",
                      "fr": "`{token}` tient en un seul jeton CLIP : parfait."},
    "adv_count_many": {"en": "`{token}` takes {count} CLIP tokens; fewer is better, 1-3 is ideal.",
                       "fr": "`{token}` occupe {count} jetons CLIP ; moins c'est mieux, 1 à 3 est idéal."},
    "adv_one_word": {"en": "Use one word without spaces, so prompts cannot split it.",
                     "fr": "Utilisez un seul mot sans espace, pour que les prompts ne le coupent pas."},
    "adv_common": {
        "en": "⚠ `{token}` looks like a common word: the model already means something by it, and that meaning "
              "will mix into your subject. Pick a rare word.",
        "fr": "⚠ `{token}` ressemble à un mot courant : le modèle lui donne déjà un sens, qui se mélangera à "
              "votre sujet. Choisissez un mot rare.",
    },
    "adv_sks": {"en": "`sks` is overused (and the model knows it as a rifle); a fresher rare token works better.",
                "fr": "`sks` est surutilisé (et le modèle le connaît comme un fusil) ; un autre mot rare marche mieux."},
    "adv_prompt": {"en": "Prompt with both words: `a photo of {token} {class_word}`, never `{token}` alone.",
                   "fr": "Écrivez les deux mots : `a photo of {token} {class_word}`, jamais `{token}` seul."},
    "adv_celebrity": {
        "en": "Tip: the name of a celebrity who looks like the subject, used as the token, gives training a head "
              "start; a rare token such as `ohwx` starts from nothing.",
        "fr": "Astuce : le nom d'une célébrité qui ressemble au sujet, utilisé comme jeton, donne une longueur "
              "d'avance à l'entraînement ; un jeton rare comme `ohwx` part de zéro.",
    },
    # validation report
    "report_errors": {"en": "Skipped (errors):", "fr": "Écartées (erreurs) :"},
    "report_warnings": {"en": "Used, with warnings:", "fr": "Utilisées, avec avertissements :"},
    "issue_unreadable": {"en": "unreadable", "fr": "Illisible ou endommagée : retirez-la, ou réenregistrez-la en "
                                                   "JPEG ou PNG."},
    "issue_too_small": {"en": "too small", "fr": "Trop petite pour la résolution d'entraînement (moins de la moitié) : "
                                                 "utilisez un original plus grand."},
    "issue_low_resolution": {"en": "low resolution", "fr": "Sous la résolution d'entraînement : elle sera agrandie "
                                                           "et pourra paraître floue."},
    "issue_cmyk": {"en": "CMYK", "fr": "En CMJN (couleurs d'impression) : convertie en RVB, les couleurs peuvent "
                                       "changer."},
    "issue_alpha": {"en": "transparent", "fr": "Zones transparentes : elles seront remplies de blanc."},
    "issue_exif_rotated": {"en": "rotated", "fr": "Tournée par l'appareil photo (EXIF) : redressée "
                                                  "automatiquement, rien à faire."},
    "issue_grayscale": {"en": "black and white", "fr": "En noir et blanc : le modèle apprendra un sujet sans "
                                                       "couleur."},
    "issue_blurry": {"en": "blurry", "fr": "Floue ou sans détails : une photo floue apprend le flou au modèle. "
                                           "Remplacez-la par une photo nette."},
    "issue_near_duplicate": {"en": "near duplicate", "fr": "Presque identique à une autre photo : gardez-en une "
                                                           "seule, les doublons font recopier la photo."},
    "issue_no_face": {"en": "no face", "fr": "Aucun visage trouvé alors que la classe est une personne : utilisez des "
                                         "photos où le visage se voit (ou recadrez sur le visage)."},
    "issue_same_background": {"en": "same background", "fr": "Même fond que la plupart des autres photos : ce qui est "
                                                             "identique partout est appris comme faisant partie du "
                                                             "sujet. Variez fonds, vêtements et lumière."},
    "issue_short_unreadable": {"en": "unreadable", "fr": "illisible"},
    "issue_short_too_small": {"en": "too small", "fr": "trop petite"},
    "issue_short_low_resolution": {"en": "low resolution", "fr": "basse résolution"},
    "issue_short_cmyk": {"en": "CMYK colours", "fr": "couleurs CMJN"},
    "issue_short_alpha": {"en": "transparency", "fr": "transparence"},
    "issue_short_exif_rotated": {"en": "rotated (fixed)", "fr": "tournée (corrigé)"},
    "issue_short_grayscale": {"en": "black and white", "fr": "noir et blanc"},
    "issue_short_blurry": {"en": "blurry", "fr": "floue"},
    "issue_short_near_duplicate": {"en": "near duplicate", "fr": "quasi-doublon"},
    # ------------------------------------------------------------------ Training tab
    "issue_short_no_face": {"en": "no face", "fr": "pas de visage"},
    "issue_short_same_background": {"en": "same background", "fr": "même fond"},
    "tr_intro": {
        "en": "Pick the project and the base model, **check the GPU**, start. Training runs on the server: you "
              "can close this page and come back. A model file is saved every “save every” steps: compare them "
              "in the Test tab. **Too few steps: it does not look like the subject; too many: it copies the "
              "training photos.** Keep the class images (prior weight above 0), or every “person” will drift "
              "towards your subject — watch the bare class preview.",
        "fr": "Choisissez le projet et le modèle de base, **vérifiez la carte graphique**, lancez. L'entraînement "
              "tourne sur le serveur : vous pouvez fermer cette page et revenir. Un fichier modèle est enregistré "
              "toutes les « enregistrer toutes les » étapes : comparez-les dans l'onglet Test. **Trop peu "
              "d'étapes : pas ressemblant ; trop : le modèle recopie les photos.** Gardez les images de classe "
              "(poids de l'a priori au-dessus de 0), sinon toute « person » finira par ressembler à votre sujet — "
              "surveillez l'aperçu de la classe seule.",
    },
    "tr_project": {"en": "Project", "fr": "Projet"},
    "tr_project_info": {"en": "Made in the Dataset tab (photos prepared, token and class saved).",
                        "fr": "Créé dans l'onglet Jeu de données (photos préparées, jeton et classe enregistrés)."},
    "tr_model": {"en": "Base model", "fr": "Modèle de base"},
    "tr_model_info": {"en": "The SD v1 checkpoint to start from (files in models/).",
                      "fr": "Le modèle SD v1 de départ (fichiers de models/)."},
    "tr_preset": {"en": "Preset (free VRAM it needs)", "fr": "Préréglage (mémoire vidéo libre nécessaire)"},
    "tr_preset_info": {"en": "24gb for an RTX 3090/4090; 12gb and 8gb keep bf16 weights whose updates are rounded "
                             "stochastically: they learn as much, a little slower, in about half the memory.",
                       "fr": "24gb pour une RTX 3090/4090 ; 12gb et 8gb gardent des poids bf16 mis à jour avec un "
                             "arrondi stochastique : ils apprennent autant, un peu moins vite, dans environ la moitié de la "
                             "mémoire."},
    "tr_run_name": {"en": "Run name (optional)", "fr": "Nom de l'entraînement (facultatif)"},
    "tr_run_name_info": {"en": "Folder under outputs/runs/; empty: project name and date.",
                         "fr": "Dossier dans outputs/runs/ ; vide : nom du projet et date."},
    "tr_resume_run": {"en": "Continue this run", "fr": "Reprendre cet entraînement"},
    "tr_resume_run_info": {"en": "Resume a stopped run of that name from its last saved state.",
                           "fr": "Reprendre un entraînement arrêté de ce nom depuis son dernier état enregistré."},
    "tr_advanced": {"en": "Advanced settings", "fr": "Réglages avancés"},
    "tr_cpu_note": {
        "en": "No NVIDIA GPU: training runs on the CPU. Use the demo model with 64 px images and a few steps.",
        "fr": "Pas de carte NVIDIA : l'entraînement tourne sur le processeur. Utilisez le modèle de démonstration, "
              "des images de 64 px et peu d'étapes.",
    },
    "tr_check_gpu": {"en": "Check GPU", "fr": "Vérifier le GPU"},
    "tr_start": {"en": "▶ Start", "fr": "▶ Lancer"},
    "tr_pause": {"en": "❚❚ Pause", "fr": "❚❚ Pause"},
    "tr_resume": {"en": "▶ Resume", "fr": "▶ Reprendre"},
    "tr_stop": {"en": "■ Stop", "fr": "■ Arrêter"},
    "tr_loss": {"en": "Loss", "fr": "Perte"},
    "tr_vram": {"en": "GPU memory (GiB)", "fr": "Mémoire GPU (Gio)"},
    "tr_meter": {"en": "Meter at each saved checkpoint (fit: lower = learnt; drift: above 0 = the class takes on the "
                       "subject; copying: lower = better)",
                 "fr": "Mesures à chaque modèle enregistré (ajustement : plus bas = appris ; dérive : au-dessus de 0 = "
                       "la classe prend les traits du sujet ; copie : plus bas = mieux)"},
    "tr_plot_score": {"en": "score", "fr": "score"},
    "tr_series_subject_fit": {"en": "subject fit", "fr": "ajustement au sujet"},
    "tr_series_class_drift": {"en": "class drift", "fr": "dérive de la classe"},
    "tr_series_copying": {"en": "copying", "fr": "copie"},
    "tr_previews": {"en": "Previews: one row per step, same prompts and seeds each time (newest first)",
                    "fr": "Aperçus : une ligne par étape, mêmes prompts et graines à chaque fois (plus récents en haut)"},
    "tr_plot_step": {"en": "step", "fr": "étape"},
    "tr_plot_series": {"en": "curve", "fr": "courbe"},
    "tr_plot_loss": {"en": "loss", "fr": "perte"},
    "tr_plot_gib": {"en": "GiB", "fr": "Gio"},
    "tr_series_loss": {"en": "loss", "fr": "perte"},
    "tr_series_prior": {"en": "prior loss", "fr": "perte de l'a priori"},
    "tr_series_allocated": {"en": "allocated", "fr": "allouée"},
    "tr_series_reserved": {"en": "reserved", "fr": "réservée"},
    "tr_series_gpu_reserved": {"en": "GPU {index} reserved", "fr": "GPU {index} réservée"},
    "tr_loss_value": {"en": "loss {loss}", "fr": "perte {loss}"},
    "tr_log": {"en": "Log", "fr": "Journal"},
    "tr_no_run": {"en": "No training yet.", "fr": "Aucun entraînement pour l'instant."},
    "tr_step": {"en": "step {step} / {total}", "fr": "étape {step} / {total}"},
    "tr_eta": {"en": "{eta} left", "fr": "reste {eta}"},
    "tr_estimate": {"en": "About {classes} of class images ({n} to make), then {training} of training.",
                    "fr": "Environ {classes} d'images de classe ({n} à créer), puis {training} d'entraînement."},
    "tr_estimate_training": {"en": "About {training} of training (the class images are there).",
                             "fr": "Environ {training} d'entraînement (les images de classe sont prêtes)."},
    "tr_estimate_gpu_note": {"en": "(Speeds measured on an H200: a home card takes longer.)",
                             "fr": "(Vitesses mesurées sur une H200 : une carte grand public met plus longtemps.)"},
    "tr_class_images_progress": {"en": "Class images of “{class_word}”: {done} / {total}",
                                 "fr": "Images de classe « {class_word} » : {done} / {total}"},
    "tr_elapsed": {"en": "{elapsed} elapsed", "fr": "{elapsed} écoulé"},
    "tr_run_folder": {"en": "Run folder: `{folder}`", "fr": "Dossier : `{folder}`"},
    "tr_checkpoints": {"en": "Model files: {n}, the last `{last}` (compare them in the Test tab).",
                       "fr": "Fichiers modèle : {n}, le dernier `{last}` (comparez-les dans l'onglet Test)."},
    "tr_gate_ok": {"en": "✔ This GPU can train with this preset.", "fr": "✔ Cette carte peut entraîner avec ce "
                                                                       "préréglage."},
    "tr_gate_refused": {"en": "✖ Training on this GPU would fail now:", "fr": "✖ L'entraînement sur cette carte "
                                                                              "échouerait maintenant :"},
    "tr_gate_cpu": {"en": "ℹ No NVIDIA GPU can be used here ({cause}), so **▶ Start** trains on the CPU: fine with "
                          "the demo model, far too slow for a real one.",
                    "fr": "ℹ Aucune carte NVIDIA n'est utilisable ici ({cause}) : **▶ Lancer** entraîne donc sur le "
                          "processeur, ce qui convient au modèle de démonstration mais est bien trop lent pour un "
                          "vrai modèle."},
    "tr_cpu_real_model": {
        "en": "Training a real SD v1 model on the CPU takes days; use an NVIDIA GPU, or the demo model to try.",
        "fr": "Entraîner un vrai modèle SD v1 sur processeur prend des jours ; utilisez une carte NVIDIA, ou le "
              "modèle de démonstration pour essayer.",
    },
    "tr_preview_caption": {"en": "step {step} · {prompt} · seed {seed}", "fr": "étape {step} · {prompt} · graine {seed}"},
    "tr_project_summary": {
        "en": "Trains `{token} {class_word}` on {photos} prepared photos and {classes} class images, at {resolution} px.",
        "fr": "Entraîne `{token} {class_word}` sur {photos} photos préparées et {classes} images de classe, en "
              "{resolution} px.",
    },
    "tr_project_summary_many": {
        "en": "Trains {n} subjects together, at {resolution} px:",
        "fr": "Entraîne {n} sujets ensemble, en {resolution} px :",
    },
    "tr_summary_subject": {
        "en": "`{token} {class_word}`: {photos} prepared photos, {classes} class images",
        "fr": "`{token} {class_word}` : {photos} photos préparées, {classes} images de classe",
    },
    "tr_no_class_images": {
        "en": "No class images yet: training first generates “Class images to generate” (Advanced settings) with the "
              "base model, or set the prior weight to 0 to train without them.",
        "fr": "Pas encore d'images de classe : l'entraînement génère d'abord les « Images de classe à générer » "
              "(réglages avancés) avec le modèle de base ; sinon mettez le poids de l'a priori à 0.",
    },
    "status_idle": {"en": "Idle", "fr": "En attente"},
    "status_preparing": {"en": "Preparing (checking images, loading the model, class images)…",
                         "fr": "Préparation (images, chargement du modèle, images de classe)…"},
    "status_running": {"en": "Training", "fr": "Entraînement en cours"},
    "status_paused": {"en": "Paused", "fr": "En pause"},
    "status_stopping": {"en": "Stopping (saving a model)…", "fr": "Arrêt (enregistrement d'un modèle)…"},
    "status_stopped": {"en": "Stopped", "fr": "Arrêté"},
    "status_stopping_preparing": {"en": "Stopping (nothing trained yet: no model file)…",
                                  "fr": "Arrêt (rien n'est encore entraîné : pas de fichier modèle)…"},
    "status_finished": {"en": "Finished", "fr": "Terminé"},
    "status_failed": {"en": "Failed", "fr": "Échec"},
    # settings (TrainConfig fields)
    "cfg_steps": {"en": "Steps", "fr": "Étapes"},
    "cfg_steps_info": {"en": "Too few: not like the subject; too many: copies the photos. ~100 per photo is a start.",
                       "fr": "Trop peu : pas ressemblant ; trop : recopie les photos. ~100 par photo pour "
                             "commencer."},
    "cfg_learning_rate": {"en": "Learning rate", "fr": "Taux d'apprentissage"},
    "cfg_learning_rate_info": {"en": "1e-6 is the classic DreamBooth value; higher learns faster and overfits sooner.",
                               "fr": "1e-6 est la valeur DreamBooth classique ; plus haut apprend plus vite et "
                                     "surapprend plus tôt."},
    "cfg_save_every": {"en": "Save a model every (steps)", "fr": "Enregistrer un modèle toutes les (étapes)"},
    "cfg_save_every_info": {"en": "Each file is ~2 GB; 0 saves only at the end.",
                            "fr": "Chaque fichier fait ~2 Go ; 0 n'enregistre qu'à la fin."},
    "cfg_preview_every": {"en": "Preview every (steps)", "fr": "Aperçu toutes les (étapes)"},
    "cfg_preview_every_info": {"en": "Sample the preview prompts every N steps; 0: at start and end only.",
                               "fr": "Génère les prompts d'aperçu toutes les N étapes ; 0 : au début et à la fin."},
    "cfg_prior_loss_weight": {"en": "Prior weight", "fr": "Poids de l'a priori"},
    "cfg_prior_loss_weight_info": {"en": "Weight of the class images; 0 trains without them (the class drifts).",
                                   "fr": "Poids des images de classe ; 0 s'en passe (la classe dérive)."},
    "cfg_class_images": {"en": "Class images to generate", "fr": "Images de classe à générer"},
    "cfg_class_images_info": {"en": "Made with the base model when the project has none yet.",
                              "fr": "Faites avec le modèle de base si le projet n'en a pas encore."},
    "cfg_batch_size": {"en": "Batch size", "fr": "Taille de lot"},
    "cfg_batch_size_info": {"en": "Photos per step (as many class images join them). More needs more VRAM.",
                            "fr": "Photos par étape (autant d'images de classe s'y ajoutent). Plus = plus de "
                                  "mémoire."},
    "cfg_grad_accum": {"en": "Gradient accumulation", "fr": "Accumulation de gradient"},
    "cfg_grad_accum_info": {"en": "Batches added up per step: a bigger batch without more VRAM.",
                            "fr": "Lots additionnés par étape : un plus grand lot sans plus de mémoire."},
    "cfg_lr_schedule": {"en": "Learning-rate schedule", "fr": "Évolution du taux"},
    "cfg_lr_schedule_info": {"en": "constant (classic), warmup, or cosine decay.",
                             "fr": "constant (classique), montée progressive (warmup) ou décroissance cosinus."},
    "cfg_warmup_steps": {"en": "Warmup steps", "fr": "Étapes de montée"},
    "cfg_warmup_steps_info": {"en": "For warmup and cosine.", "fr": "Pour warmup et cosine."},
    "cfg_precision": {"en": "Precision", "fr": "Précision"},
    "cfg_precision_info": {"en": "bf16-mixed for RTX 30xx and newer; 16-mixed for older cards; bf16-true halves "
                                 "the weights' memory (updates rounded stochastically).",
                           "fr": "bf16-mixed pour les RTX 30xx et plus récentes ; 16-mixed pour les anciennes ; "
                                 "bf16-true divise par deux la mémoire des poids (mises à jour arrondies de façon "
                                 "stochastique)."},
    "cfg_optimizer": {"en": "Optimizer", "fr": "Optimiseur"},
    "cfg_optimizer_info": {"en": "adamw8bit saves ~5 GiB (needs bitsandbytes).",
                           "fr": "adamw8bit économise ~5 Gio (nécessite bitsandbytes)."},
    "cfg_cuda_graphs": {"en": "CUDA graphs", "fr": "Graphes CUDA"},
    "cfg_cuda_graphs_info": {"en": "The UNet's step replayed as CUDA graphs: about 3× faster on the GPU (5× with a "
                                   "LoRA). With 8-bit AdamW it needs ~1.5 GiB more (a LoRA 0.1 GiB); turn it off if "
                                   "the 8gb preset runs out of memory.",
                             "fr": "Le pas du UNet rejoué en graphes CUDA : environ 3× plus rapide sur la carte (5× avec "
                                   "un LoRA). Avec AdamW 8 bits il demande ~1,5 Gio de plus (un LoRA 0,1 Gio) ; "
                                   "désactivez-le si le préréglage 8gb manque de mémoire."},
    "cfg_gradient_checkpointing": {"en": "Gradient checkpointing", "fr": "Gradient checkpointing"},
    "cfg_gradient_checkpointing_info": {"en": "~30% slower, far less memory.",
                                        "fr": "~30 % plus lent, beaucoup moins de mémoire."},
    "cfg_train_text_encoder": {"en": "Train the text encoder too", "fr": "Entraîner aussi l'encodeur de texte"},
    "cfg_train_text_encoder_info": {"en": "As the old repos did; a stronger likeness, more VRAM.",
                                    "fr": "Comme les anciens dépôts ; plus ressemblant, plus de mémoire."},
    "cfg_text_encoder_lr": {"en": "Text encoder learning rate", "fr": "Taux de l'encodeur de texte"},
    "cfg_text_encoder_lr_info": {"en": "0: the same as the learning rate.", "fr": "0 : le même que le taux "
                                                                                  "d'apprentissage."},
    "cfg_method": {"en": "Method", "fr": "Méthode"},
    "cfg_method_info": {"en": "full: the whole UNet (2 GB files). lora: a LoRA on the frozen UNet (files of a few MB, "
                              "any SD v1 model; far less VRAM).",
                        "fr": "full : tout l'UNet (fichiers de 2 Go). lora : un LoRA sur l'UNet figé (fichiers de "
                              "quelques Mo, pour tout modèle SD v1 ; bien moins de mémoire)."},
    "cfg_lora_rank": {"en": "LoRA rank", "fr": "Rang du LoRA"},
    "cfg_lora_rank_info": {"en": "Method lora: 8-32 is usual; higher holds more detail, makes larger files.",
                           "fr": "Méthode lora : 8 à 32 en général ; plus haut retient plus de détails, fichiers "
                                 "plus gros."},
    "cfg_lora_alpha": {"en": "LoRA alpha", "fr": "Alpha du LoRA"},
    "cfg_lora_alpha_info": {"en": "The LoRA's update is scaled by alpha / rank; half the rank is usual.",
                            "fr": "La mise à jour du LoRA est multipliée par alpha / rang ; la moitié du rang en "
                                  "général."},
    "cfg_lora_conv_rank": {"en": "LoRA conv rank", "fr": "Rang des convolutions du LoRA"},
    "cfg_lora_conv_rank_info": {"en": "Above 0, the LoRA also adapts the ResBlocks' convolutions at this rank; 0 "
                                      "adapts the attention layers only (kohya's default).",
                                "fr": "Au-dessus de 0, le LoRA adapte aussi les convolutions des ResBlocks à ce "
                                      "rang ; 0 n'adapte que les couches d'attention (le défaut de kohya)."},
    "cfg_lora_learning_rate": {"en": "LoRA learning rate", "fr": "Taux d'apprentissage du LoRA"},
    "cfg_lora_learning_rate_info": {"en": "Method lora's own (1e-4 is usual); the learning rate above is full's.",
                                    "fr": "Celui de la méthode lora (1e-4 en général) ; le taux ci-dessus est celui "
                                          "de full."},
    "cfg_ema": {"en": "EMA", "fr": "EMA"},
    "cfg_ema_info": {"en": "Keep a smoothed copy of the UNet (+3.3 GiB VRAM).",
                     "fr": "Garder une copie lissée de l'UNet (+3,3 Gio de mémoire)."},
    "cfg_ema_decay": {"en": "EMA decay", "fr": "Décroissance EMA"},
    "cfg_ema_decay_info": {"en": "0.999 is usual.", "fr": "0,999 en général."},
    "cfg_max_grad_norm": {"en": "Gradient clipping", "fr": "Écrêtage du gradient"},
    "cfg_max_grad_norm_info": {"en": "Max gradient norm; 0 turns it off.", "fr": "Norme maximale ; 0 le désactive."},
    "cfg_weight_decay": {"en": "Weight decay", "fr": "Décroissance des poids"},
    "cfg_weight_decay_info": {"en": "AdamW's; 0.01 is usual.", "fr": "Celle d'AdamW ; 0,01 en général."},
    "cfg_noise_offset": {"en": "Noise offset", "fr": "Décalage du bruit"},
    "cfg_noise_offset_info": {"en": "0.05-0.1 helps very dark or bright images; 0: off.",
                              "fr": "0,05-0,1 aide les images très sombres ou claires ; 0 : désactivé."},
    "cfg_min_snr_gamma": {"en": "Min-SNR gamma", "fr": "Gamma min-SNR"},
    "cfg_min_snr_gamma_info": {"en": "Loss weighting; 5 is typical, 0: off.",
                               "fr": "Pondération de la perte ; 5 en général, 0 : désactivé."},
    "cfg_repeats": {"en": "Repeats", "fr": "Répétitions"},
    "cfg_repeats_info": {"en": "Each photo per shuffle epoch.", "fr": "Passages de chaque photo par époque."},
    "cfg_flip_p": {"en": "Mirror chance", "fr": "Probabilité de miroir"},
    "cfg_flip_p_info": {"en": "0 for asymmetric subjects (text, a parting).",
                        "fr": "0 pour un sujet asymétrique (texte, raie)."},
    "cfg_save_format": {"en": "File format", "fr": "Format de fichier"},
    "cfg_save_format_info": {"en": "safetensors loads fast and safely everywhere.",
                             "fr": "safetensors se charge vite et sans risque partout."},
    "cfg_save_half": {"en": "Save in fp16 (2 GB)", "fr": "Enregistrer en fp16 (2 Go)"},
    "cfg_save_half_info": {"en": "Off: fp32 (4 GB).", "fr": "Désactivé : fp32 (4 Go)."},
    "cfg_keep_all_states": {"en": "Keep every training state", "fr": "Garder chaque état d'entraînement"},
    "cfg_keep_all_states_info": {"en": "~11 GB each; off keeps only the last (enough to resume).",
                                 "fr": "~11 Go chacun ; désactivé garde le dernier (suffit pour reprendre)."},
    "cfg_preview_prompts": {"en": "Preview prompts (one per line)", "fr": "Prompts d'aperçu (un par ligne)"},
    "cfg_preview_prompts_info": {"en": "{token} and {class} are replaced. Keep a bare {class} line to watch drift.",
                                 "fr": "{token} et {class} sont remplacés. Gardez une ligne {class} seule pour "
                                       "surveiller la dérive."},
    "cfg_preview_seeds": {"en": "Preview seeds", "fr": "Graines d'aperçu"},
    "cfg_preview_seeds_info": {"en": "Comma-separated; the same each time.", "fr": "Séparées par des virgules ; "
                                                                               "les mêmes à chaque fois."},
    "cfg_preview_steps": {"en": "Preview sampler steps", "fr": "Étapes d'échantillonnage des aperçus"},
    "cfg_preview_steps_info": {"en": "20 is enough to judge.", "fr": "20 suffisent pour juger."},
    "cfg_preview_sampler": {"en": "Preview sampler", "fr": "Échantillonneur des aperçus"},
    "cfg_preview_sampler_info": {"en": "euler_a is a good default.", "fr": "euler_a est un bon choix."},
    "cfg_seed": {"en": "Seed", "fr": "Graine"},
    "cfg_seed_info": {"en": "Same seed, same settings: the same run.", "fr": "Même graine, mêmes réglages : même "
                                                                         "entraînement."},
    "cfg_devices": {"en": "GPUs", "fr": "GPU"},
    "cfg_devices_info": {"en": "How many GPUs train, one process each, or all (Linux). Each GPU takes the batch size "
                               "per step: the effective batch is batch size × accumulation × GPUs; the steps and "
                               "the learning rate stay as set.",
                         "fr": "Combien de GPU entraînent, un processus chacun, ou all (Linux). Chaque GPU prend la "
                               "taille de lot à chaque étape : le lot effectif vaut taille de lot × accumulation × "
                               "GPU ; les étapes et le taux d'apprentissage restent tels quels."},
    # ------------------------------------------------------------------ Test tab
    "te_intro": {
        "en": "Try any model, or any step of a run. **Write `token class`** (`a portrait of ohwx person`), never "
              "the token alone: the class word carries the likeness. Pick the best step with the comparison grid "
              "below: too few steps do not look like the subject, too many copy the training photos.",
        "fr": "Essayez n'importe quel modèle, ou n'importe quelle étape d'un entraînement. **Écrivez `jeton "
              "classe`** (`a portrait of ohwx person`), jamais le jeton seul : c'est le mot de classe qui porte "
              "la ressemblance. Choisissez la meilleure étape avec la grille de comparaison plus bas : trop peu "
              "d'étapes, pas ressemblant ; trop, le modèle recopie les photos d'entraînement.",
    },
    "te_model": {"en": "Model", "fr": "Modèle"},
    "te_model_info": {"en": "Files in models/ and outputs/, each run's step files included.",
                      "fr": "Fichiers de models/ et outputs/, y compris chaque étape des entraînements."},
    "te_token": {"en": "Token", "fr": "Jeton"},
    "te_token_info": {"en": "To check your prompt.", "fr": "Pour vérifier le prompt."},
    "te_class": {"en": "Class word", "fr": "Mot de classe"},
    "te_class_info": {"en": "Filled in from trained files.", "fr": "Rempli depuis les fichiers entraînés."},
    "te_prompt": {"en": "Prompt", "fr": "Prompt"},
    "te_prompt_placeholder": {"en": "a portrait of ohwx person, oil painting",
                              "fr": "a portrait of ohwx person, oil painting (en anglais)"},
    "te_fix_prompt": {"en": "✎ Fix the prompt", "fr": "✎ Corriger le prompt"},
    "te_negative": {"en": "Negative prompt", "fr": "Prompt négatif"},
    "te_negative_placeholder": {"en": "blurry, deformed", "fr": "blurry, deformed"},
    "te_sampler": {"en": "Sampler", "fr": "Échantillonneur"},
    "te_sampler_info": {"en": "euler_a: varied; dpmpp_2m: sharp in few steps.",
                        "fr": "euler_a : varié ; dpmpp_2m : net en peu d'étapes."},
    "te_steps": {"en": "Steps", "fr": "Étapes"},
    "te_steps_info": {"en": "20-30 is usual.", "fr": "20 à 30 en général."},
    "te_cfg": {"en": "CFG scale", "fr": "Échelle CFG"},
    "te_cfg_info": {"en": "How strictly to follow the prompt; 7 is usual.",
                    "fr": "À quel point suivre le prompt ; 7 en général."},
    "te_width": {"en": "Width", "fr": "Largeur"},
    "te_height": {"en": "Height", "fr": "Hauteur"},
    "te_size_info": {"en": "512 for SD v1 (multiples of 64).", "fr": "512 pour SD v1 (multiples de 64)."},
    "te_seed": {"en": "Seed", "fr": "Graine"},
    "te_seed_info": {"en": "-1: random. Keep one to compare.", "fr": "-1 : au hasard. Fixez-la pour comparer."},
    "te_batch": {"en": "Images", "fr": "Images"},
    "te_generate": {"en": "▶ Generate", "fr": "▶ Générer"},
    "te_gallery": {"en": "Images", "fr": "Images"},
    "te_info": {"en": "Parameters (paste into AUTOMATIC1111)", "fr": "Paramètres (à coller dans AUTOMATIC1111)"},
    "te_concepts": {"en": "This model was trained on: {concepts}.", "fr": "Ce modèle a appris : {concepts}."},
    "te_demo_note": {"en": "(Demo model: noise is expected.)", "fr": "(Modèle de démonstration : du bruit, c'est "
                                                                     "normal.)"},
    "te_lora": {"en": "LoRA (optional)", "fr": "LoRA (facultatif)"},
    "te_lora_info": {"en": "Applied to the model above; LoRA files in models/ and outputs/ (extracted: outputs/lora/).",
                     "fr": "Appliqué au modèle ci-dessus ; fichiers LoRA de models/ et outputs/ (extraits : "
                           "outputs/lora/)."},
    "te_lora_weight": {"en": "LoRA weight", "fr": "Poids du LoRA"},
    "te_lora_weight_info": {"en": "1: full strength; 0.6-0.9 often keeps the base's style.",
                            "fr": "1 : pleine force ; 0,6 à 0,9 garde souvent le style de la base."},
    "te_compare_heading": {"en": "Compare checkpoints (pick the best step)",
                           "fr": "Comparer des modèles (choisir la meilleure étape)"},
    "te_compare_help": {
        "en": "Every chosen file draws every prompt with the same seed and the settings above, in one labelled "
              "grid. Pick the step that looks like the subject without copying the photos, and check that the "
              "bare class (`a photo of a person`) still looks like anyone.",
        "fr": "Chaque fichier choisi dessine chaque prompt avec la même graine et les réglages ci-dessus, dans une "
              "grille légendée. Choisissez l'étape ressemblante qui ne recopie pas les photos, et vérifiez que la "
              "classe seule (`a photo of a person`) ressemble encore à n'importe qui.",
    },
    "te_compare_models": {"en": "Files to compare", "fr": "Fichiers à comparer"},
    "te_compare_models_info": {"en": "e.g. the steps of one run.", "fr": "par ex. les étapes d'un entraînement."},
    "te_compare_prompts": {"en": "Prompts, one per line", "fr": "Prompts, un par ligne"},
    "te_compare_prompts_info": {"en": "Include one bare-class prompt to see drift.",
                                "fr": "Mettez un prompt de la classe seule pour voir la dérive."},
    "te_compare_prompts_placeholder": {"en": "a portrait of ohwx person\na photo of a person",
                                       "fr": "a portrait of ohwx person\na photo of a person\n(prompts en anglais)"},
    "te_compare_run": {"en": "Render comparison grid", "fr": "Dessiner la grille"},
    "te_compare_image": {"en": "Comparison grid", "fr": "Grille de comparaison"},
    "te_meter_recommends": {
        "en": "{mark} The meter recommends **{name}**: {why}. Compare it in the grid with the files saved just before "
              "and after it: how much the samples look like the subject can change from one file to the next.",
        "fr": "{mark} Les mesures recommandent **{name}** : {why}. Comparez-le dans la grille aux fichiers enregistrés "
              "juste avant et juste après : la ressemblance des images peut changer d'un fichier au suivant."},
    "te_meter_earlier": {
        "en": "**{run}** was measured by an earlier version of the meter, whose scores do not compare with today's: "
              "`python -m sdtrainer meter {run_dir}` measures it again.",
        "fr": "**{run}** a été mesuré par une version antérieure des mesures, qui ne se comparent pas à celles "
              "d'aujourd'hui : `python -m sdtrainer meter {run_dir}` le mesure à nouveau."},
    # ------------------------------------------------------------------ Pruning tab
    "pr_intro": {
        "en": "A training file can hold optimizer states and EMA copies (up to 12 GB). Pruning keeps what image "
              "generation needs, usually in fp16 (about 2 GB for SD v1), checks that the result loads, and leaves "
              "the original alone unless you ask.",
        "fr": "Un fichier d'entraînement peut contenir les états de l'optimiseur et des copies EMA (jusqu'à "
              "12 Go). L'élagage garde ce qu'il faut pour générer des images, en général en fp16 (environ 2 Go "
              "pour SD v1), vérifie que le résultat se charge, et ne touche pas à l'original sauf si vous le "
              "demandez.",
    },
    "pr_source": {"en": "Checkpoint to prune", "fr": "Modèle à élaguer"},
    "pr_source_info": {"en": "Files in models/ and outputs/.", "fr": "Fichiers de models/ et outputs/."},
    "pr_upload": {"en": "…or upload one (.safetensors, .ckpt)", "fr": "…ou envoyez-en un (.safetensors, .ckpt)"},
    "pr_fp16": {"en": "Half precision (fp16)", "fr": "Demi-précision (fp16)"},
    "pr_fp16_info": {"en": "Half the size, the same images. Recommended.",
                     "fr": "Moitié moins lourd, les mêmes images. Recommandé."},
    "pr_ema": {"en": "EMA weights", "fr": "Poids EMA"},
    "pr_ema_info": {"en": "“Use” makes the smoothed copy the model, like the *-emaonly releases.",
                    "fr": "« Utiliser » fait de la copie lissée le modèle, comme les versions *-emaonly."},
    "pr_ema_drop": {"en": "Drop", "fr": "Supprimer"},
    "pr_ema_keep": {"en": "Keep", "fr": "Garder"},
    "pr_ema_use": {"en": "Use as the model", "fr": "Utiliser comme modèle"},
    "pr_format": {"en": "Format", "fr": "Format"},
    "pr_format_info": {"en": "safetensors is safe to load and fast.", "fr": "safetensors se charge vite et sans "
                                                                        "risque."},
    "pr_format_safetensors": {"en": ".safetensors (recommended)", "fr": ".safetensors (recommandé)"},
    "pr_out_name": {"en": "Output file name (optional)", "fr": "Nom du fichier produit (facultatif)"},
    "pr_out_name_info": {"en": "Default: <name>-pruned-fp16 beside the original (uploads: outputs/pruned/).",
                         "fr": "Par défaut : <nom>-pruned-fp16 à côté de l'original (envois : outputs/pruned/)."},
    "pr_overwrite": {"en": "Replace the output file if it exists", "fr": "Remplacer le fichier produit s'il existe"},
    "pr_overwrite_info": {"en": "Off: nothing is ever written over. The original is replaced only if you tick this "
                                "and give its own name.",
                          "fr": "Décoché : rien n'est jamais écrasé. L'original n'est remplacé que si vous cochez "
                                "ceci et donnez son propre nom."},
    "pr_run": {"en": "✂ Prune", "fr": "✂ Élaguer"},
    "pr_lora_heading": {"en": "Extract a LoRA (a small file for AUTOMATIC1111, ComfyUI and the Test tab)",
                        "fr": "Extraire un LoRA (un petit fichier pour AUTOMATIC1111, ComfyUI et l'onglet Test)"},
    "pr_lora_help": {
        "en": "A LoRA holds what training changed: the difference between the trained model and its base, layer by "
              "layer, cut to a low rank (a few tens of MB instead of 2 GB). It applies to any SD v1 model with a "
              "weight. The report says how much of the difference each rank keeps: raise the rank (or the energy) "
              "when it keeps too little.",
        "fr": "Un LoRA contient ce que l'entraînement a changé : la différence entre le modèle entraîné et sa base, "
              "couche par couche, réduite à un rang faible (quelques dizaines de Mo au lieu de 2 Go). Il s'applique "
              "à n'importe quel modèle SD v1 avec un poids. Le rapport dit quelle part de la différence chaque rang "
              "garde : augmentez le rang (ou l'énergie) s'il en garde trop peu.",
    },
    "pr_lora_base": {"en": "Base model", "fr": "Modèle de base"},
    "pr_lora_base_info": {"en": "The model the training started from.",
                          "fr": "Le modèle dont l'entraînement est parti."},
    "pr_lora_tuned": {"en": "Trained model", "fr": "Modèle entraîné"},
    "pr_lora_tuned_info": {"en": "e.g. a run's final file or best step.",
                           "fr": "par ex. le fichier final d'un entraînement ou sa meilleure étape."},
    "pr_lora_rank": {"en": "Rank", "fr": "Rang"},
    "pr_lora_rank_info": {"en": "32-64 is usual; higher keeps more, in a bigger file.",
                          "fr": "32 à 64 en général ; plus haut garde davantage, dans un fichier plus gros."},
    "pr_lora_conv_rank": {"en": "Conv rank (0: off)", "fr": "Rang des convolutions (0 : aucune)"},
    "pr_lora_conv_rank_info": {"en": "Also the ResBlocks' 3x3 convs (kohya's LoCon): more of the change, bigger.",
                               "fr": "Aussi les convolutions 3x3 des ResBlocks (LoCon de kohya) : plus fidèle, "
                                     "plus gros."},
    "pr_lora_energy": {"en": "Energy to keep (0: off)", "fr": "Énergie à garder (0 : désactivé)"},
    "pr_lora_energy_info": {"en": "e.g. 0.9: each layer gets the smallest rank that keeps 90% of its change, at "
                                  "most the rank above.",
                            "fr": "par ex. 0.9 : chaque couche reçoit le plus petit rang qui garde 90 % de son "
                                  "changement, au plus le rang ci-dessus."},
    "pr_lora_text": {"en": "Text encoder too", "fr": "Aussi l'encodeur de texte"},
    "pr_lora_text_info": {"en": "When the training changed it (the classic preset).",
                          "fr": "Quand l'entraînement l'a modifié (préréglage classic)."},
    "pr_lora_out_name": {"en": "LoRA file name (optional)", "fr": "Nom du fichier LoRA (facultatif)"},
    "pr_lora_out_name_info": {"en": "Default: <trained model>-lora-r<rank>, in outputs/lora/.",
                              "fr": "Par défaut : <modèle entraîné>-lora-r<rang>, dans outputs/lora/."},
    "pr_lora_run": {"en": "⇣ Extract the LoRA", "fr": "⇣ Extraire le LoRA"},
    # ------------------------------------------------------------------ progress
    "progress_preparing": {"en": "Preparing images", "fr": "Préparation des images"},
    "progress_class_images": {"en": "Class image {done} of {total}", "fr": "Image de classe {done} sur {total}"},
    "progress_sampling": {"en": "Sampling", "fr": "Génération"},
    "progress_compare": {"en": "Drawing with {name}", "fr": "Dessin avec {name}"},
    "progress_extracting": {"en": "Extracting from {name}", "fr": "Extraction depuis {name}"},
    "progress_pruning": {"en": "Pruning {name}", "fr": "Élagage de {name}"},
    # ------------------------------------------------------------------ messages
    "msg_project_created": {"en": "Project “{name}” created. Next: token and class, then drop photos.",
                            "fr": "Projet « {name} » créé. Ensuite : jeton et classe, puis déposez les photos."},
    "msg_subject_added": {"en": "Subject “{subject}” added ({n} subjects in the project). Next: drop its photos.",
                          "fr": "Sujet « {subject} » ajouté ({n} sujets dans le projet). Ensuite : déposez ses "
                                "photos."},
    "msg_subject_removed": {"en": "Subject “{subject}” removed from the project; its photos and captions were moved "
                                  "to {folder} (class images are kept).",
                            "fr": "Sujet « {subject} » retiré du projet ; ses photos et légendes ont été déplacées "
                                  "dans {folder} (les images de classe restent)."},
    "msg_settings_saved": {"en": "Token and class of “{name}” saved.", "fr": "Jeton et classe de « {name} » "
                                                                             "enregistrés."},
    "msg_added_photos": {"en": "Added {n} photos ({total} in the project). Next: ✂ Prepare images.",
                         "fr": "{n} photos ajoutées ({total} dans le projet). Ensuite : ✂ Préparer les images."},
    "msg_prepared": {"en": "{ok} of {total} images prepared, {skipped} skipped, {warnings} warnings (see the report).",
                     "fr": "{ok} images préparées sur {total}, {skipped} écartées, {warnings} avertissements (voir "
                           "le rapport)."},
    "msg_caption_saved": {"en": "Caption of {name} saved.", "fr": "Légende de {name} enregistrée."},
    "msg_caption_cleared": {"en": "Caption of {name} removed: it will use “{default}”.",
                            "fr": "Légende de {name} supprimée : « {default} » sera utilisé."},
    "msg_removed": {"en": "{name} removed from the project.", "fr": "{name} retirée du projet."},
    "msg_recropped": {"en": "{name} cropped again.", "fr": "{name} recadrée."},
    "msg_recrop_no_face": {"en": "No face found in {name}: it is cropped in the middle.",
                           "fr": "Aucun visage trouvé dans {name} : elle est recadrée au centre."},
    "msg_class_imported": {"en": "{n} class images imported.", "fr": "{n} images de classe importées."},
    "msg_class_ready": {"en": "{n} generated class images ready.", "fr": "{n} images de classe générées prêtes."},
    "msg_stopped": {"en": "Stopped.", "fr": "Arrêté."},
    "msg_stopped_kept": {"en": "Stopped; what was made is kept.", "fr": "Arrêté ; ce qui est fait est conservé."},
    "msg_stopping": {"en": "Stopping…", "fr": "Arrêt en cours…"},
    "msg_nothing_to_stop": {"en": "Nothing is running.", "fr": "Rien n'est en cours."},
    "msg_generated": {"en": "{n} image(s) saved in `{folder}`.", "fr": "{n} image(s) enregistrée(s) dans `{folder}`."},
    "msg_compare_done": {"en": "Grid saved as `{path}` (seed {seed}).",
                         "fr": "Grille enregistrée dans `{path}` (graine {seed})."},
    "msg_pruned": {
        "en": "✔ **Done.** {src} ({src_size}) → **{dst}** ({dst_size}): {saved} smaller. The new file loads "
              "correctly ({kept} tensors kept, {dropped} dropped).\n\nSaved as `{path}`.",
        "fr": "✔ **Terminé.** {src} ({src_size}) → **{dst}** ({dst_size}) : {saved} plus léger. Le nouveau fichier "
              "se charge correctement ({kept} tenseurs gardés, {dropped} retirés).\n\nEnregistré dans `{path}`.",
    },
    "msg_extracted": {
        "en": "✔ **Done.** **{name}** ({size}): {layers} layers at rank {ranks} keep **{kept}** of the difference "
              "between {tuned} and {base}.\n\nSaved as `{path}`. Choose it in the Test tab, or copy it to "
              "AUTOMATIC1111's models/Lora and write `<lora:{stem}:0.8>` in a prompt.",
        "fr": "✔ **Terminé.** **{name}** ({size}) : {layers} couches au rang {ranks} gardent **{kept}** de la "
              "différence entre {tuned} et {base}.\n\nEnregistré dans `{path}`. Choisissez-le dans l'onglet Test, "
              "ou copiez-le dans models/Lora d'AUTOMATIC1111 et écrivez `<lora:{stem}:0.8>` dans un prompt.",
    },
    "msg_extracted_held": {"en": "These layers hold {held} of all that training changed (biases, norms, the first "
                                 "and last convs are in no LoRA; the conv rank adds the ResBlocks).",
                           "fr": "Ces couches portent {held} de tout ce que l'entraînement a changé (biais, "
                                 "normalisations, première et dernière convolutions ne sont dans aucun LoRA ; le rang "
                                 "des convolutions ajoute les ResBlocks)."},
    "msg_extracted_ranks": {"en": "Kept at another rank: {ranks}.", "fr": "Part gardée à un autre rang : {ranks}."},
    "msg_extracted_unchanged": {"en": "{n} layers the training left alone are left out.",
                                "fr": "{n} couches que l'entraînement n'a pas modifiées sont laissées de côté."},
    "msg_extracted_worst": {"en": "Layers that keep the least:", "fr": "Couches qui gardent le moins :"},
    "msg_extracted_layer": {"en": "`{name}`: rank {rank} of {full} keeps {kept}",
                            "fr": "`{name}` : rang {rank} sur {full}, garde {kept}"},
    "msg_original_replaced": {"en": "The original was replaced by its pruned version, as asked.",
                              "fr": "L'original a été remplacé par sa version élaguée, comme demandé."},
    "msg_training_started": {"en": "Training “{run}” started in `{folder}`. Progress appears below.",
                             "fr": "Entraînement « {run} » lancé dans `{folder}`. La progression s'affiche "
                                   "ci-dessous."},
    "msg_training_paused": {"en": "Pausing after the current step.", "fr": "Pause après l'étape en cours."},
    "msg_training_resumed": {"en": "Resumed.", "fr": "Reprise."},
    "msg_training_stopping": {"en": "Stopping after the current step; a model file is saved.",
                              "fr": "Arrêt après l'étape en cours ; un fichier modèle est enregistré."},
    "msg_training_stopping_preparing": {
        "en": "Stopping before the first step: nothing is trained yet, so no model file is written (the class "
              "images made so far are kept).",
        "fr": "Arrêt avant la première étape : rien n'est encore entraîné, aucun fichier modèle n'est écrit (les "
              "images de classe déjà faites sont gardées)."},
    "msg_no_training": {"en": "No training is running.", "fr": "Aucun entraînement en cours."},
    "lint_bare_tokens": {
        "en": "Write each token with its own class word, {pairs}, never a token alone: the class word is what makes "
              "the likeness work (the number one mistake with these models).",
        "fr": "Écrivez chaque jeton avec son propre mot de classe, {pairs}, jamais un jeton seul : c'est le mot de "
              "classe qui fait la ressemblance (l'erreur numéro un avec ces modèles).",
    },
    "lint_fixed": {"en": "Suggested: `{prompt}`", "fr": "Proposition : `{prompt}`"},
    "warn_caption_without_photo": {
        "en": "{n} text file(s) ({names}) are not photos: a .txt is the caption of the photo with the same name, "
              "and there is none. Add that photo, or drop photos (JPEG, PNG, WebP).",
        "fr": "{n} fichier(s) texte ({names}) ne sont pas des photos : un .txt est la légende de la photo du même "
              "nom, et il n'y en a pas. Ajoutez cette photo, ou déposez des photos (JPEG, PNG, WebP).",
    },
    "warn_not_images": {"en": "Skipped {n} files that are not images: {names}.",
                        "fr": "{n} fichiers ignorés, ce ne sont pas des images : {names}."},
    "warn_few_photos": {"en": "⚠ Only {n} usable photos: {low} to {high} varied photos work best.",
                        "fr": "⚠ Seulement {n} photos utilisables : {low} à {high} photos variées, c'est l'idéal."},
    "warn_many_photos": {"en": "⚠ {n} photos: more than about {high} rarely helps and slows training.",
                         "fr": "⚠ {n} photos : au-delà d'environ {high}, cela aide rarement et ralentit."},
    "warn_caption_no_token": {"en": "This caption lacks the token: write `{token} {class_word}` in it.",
                              "fr": "Cette légende n'a pas le jeton : écrivez-y `{token} {class_word}`."},
    "warn_class_skipped": {"en": "{n} files skipped (not usable images): {names}.",
                           "fr": "{n} fichiers écartés (images inutilisables) : {names}."},
    # ------------------------------------------------------------------ errors
    "err_detail": {"en": "{error}", "fr": "Impossible : {error}"},
    "err_no_project": {"en": "Pick or create a project first (Dataset tab).",
                       "fr": "Choisissez ou créez d'abord un projet (onglet Jeu de données)."},
    "err_project_name": {"en": "“{name}” cannot be a project name: use 1-64 letters, digits, spaces, - _ or .",
                         "fr": "« {name} » ne peut pas être un nom de projet : 1 à 64 lettres, chiffres, espaces, "
                               "- _ ou ."},
    "err_project_exists": {"en": "A project named “{name}” already exists: pick it in the list.",
                           "fr": "Un projet « {name} » existe déjà : choisissez-le dans la liste."},
    "err_project_missing": {"en": "The project “{name}” is gone; press ⟳ to refresh the list.",
                            "fr": "Le projet « {name} » a disparu ; cliquez sur ⟳ pour actualiser la liste."},
    "err_project_damaged": {
        "en": "The project “{name}” cannot be opened: its project.json is damaged or names folders outside the "
              "project. Fix or delete that file (its photos stay where they are).",
        "fr": "Impossible d'ouvrir le projet « {name} » : son project.json est abîmé ou nomme des dossiers hors du "
              "projet. Corrigez ou supprimez ce fichier (ses photos restent en place).",
    },
    "err_caption_chars": {
        "en": "The caption holds a character that cannot be saved (a broken emoji or a lone surrogate); retype it.",
        "fr": "La légende contient un caractère impossible à enregistrer (un émoji cassé ou un « surrogate » "
              "isolé) ; retapez-la.",
    },
    "err_subject_missing": {"en": "The project has no subject “{token}”; pick one in the list.",
                            "fr": "Le projet n'a pas de sujet « {token} » ; choisissez-en un dans la liste."},
    "err_token_used": {"en": "“{token}” is already a subject of this project: give each subject its own token.",
                       "fr": "« {token} » est déjà un sujet de ce projet : donnez à chaque sujet son propre jeton."},
    "err_token_chars": {"en": "“{word}” cannot be a subject's token (it names its folder): use letters, digits, - "
                              "or _.",
                        "fr": "« {word} » ne peut pas être le jeton d'un sujet (il nomme son dossier) : lettres, "
                              "chiffres, - ou _."},
    "err_class_chars": {"en": "“{word}” cannot be a class word (it names the class images' folder): use letters, "
                              "digits, spaces, - or _.",
                        "fr": "« {word} » ne peut pas être un mot de classe (il nomme le dossier des images de "
                              "classe) : lettres, chiffres, espaces, - ou _."},
    "err_remove_first_subject": {"en": "The project's first subject cannot be removed; change its token and class "
                                       "instead, or make another project.",
                                 "fr": "Le premier sujet du projet ne peut pas être retiré ; changez plutôt son jeton "
                                       "et sa classe, ou créez un autre projet."},
    "err_subject_no_prepared": {"en": "The subject “{subject}” has no prepared images: prepare its photos in the "
                                      "Dataset tab, or remove it.",
                                "fr": "Le sujet « {subject} » n'a pas d'images préparées : préparez ses photos dans "
                                      "l'onglet Jeu de données, ou retirez-le."},
    "err_token_empty": {"en": "Enter a token (a rare word such as ohwx).",
                        "fr": "Saisissez un jeton (un mot rare comme ohwx)."},
    "err_token_space": {"en": "The token must be one word, without spaces.",
                        "fr": "Le jeton doit être un seul mot, sans espace."},
    "err_class_empty": {"en": "Enter a class word (person, man, woman, dog…).",
                        "fr": "Saisissez un mot de classe (person, man, woman, dog…)."},
    "err_resolution": {"en": "The resolution must be a multiple of 64 from {low} to {high}, not {value}.",
                       "fr": "La résolution doit être un multiple de 64 entre {low} et {high}, pas {value}."},
    "err_save_settings_first": {"en": "Save the project's token and class first.",
                                "fr": "Enregistrez d'abord le jeton et la classe du projet."},
    "err_no_files": {"en": "Drop some files first.", "fr": "Déposez d'abord des fichiers."},
    "err_no_photos": {"en": "This project has no photos yet: drop some in the box.",
                      "fr": "Ce projet n'a pas encore de photos : déposez-en dans la zone prévue."},
    "err_no_prepared": {"en": "This project has no prepared images: press ✂ Prepare images in the Dataset tab.",
                        "fr": "Ce projet n'a pas d'images préparées : cliquez sur ✂ Préparer les images dans "
                              "l'onglet Jeu de données."},
    "err_no_selection": {"en": "Click an image in the gallery first.",
                         "fr": "Cliquez d'abord sur une image de la galerie."},
    "err_image_gone": {"en": "{name} is no longer in the project; prepare the images again.",
                       "fr": "{name} n'est plus dans le projet ; préparez à nouveau les images."},
    "err_source_gone": {"en": "The original photo of {name} is gone: add it again, then prepare the images.",
                        "fr": "La photo d'origine de {name} a disparu : ajoutez-la de nouveau, puis préparez les "
                              "images."},
    "err_recrop": {"en": "Unknown crop “{where}”: choose one in the list.",
                   "fr": "Recadrage « {where} » inconnu : choisissez-en un dans la liste."},
    "err_folder_missing": {"en": "“{folder}” is not a folder on this computer: paste the full path of a folder.",
                           "fr": "« {folder} » n'est pas un dossier de cet ordinateur : collez le chemin complet "
                                 "d'un dossier."},
    "err_folder_is_reg": {"en": "That is the project's own class image folder: choose another one.",
                          "fr": "C'est le dossier des images de classe du projet lui-même : choisissez-en un autre."},
    "err_folder_empty": {"en": "No images (.jpg, .png, .webp, .bmp) in {folder}.",
                         "fr": "Aucune image (.jpg, .png, .webp, .bmp) dans {folder}."},
    "err_count_range": {"en": "Choose between {low} and {high} images.", "fr": "Choisissez entre {low} et {high} "
                                                                               "images."},
    "err_no_model": {"en": "Choose a model first.", "fr": "Choisissez d'abord un modèle."},
    "err_outside_folders": {
        "en": "{path} is outside the app's folders ({folders}); the app reads only files there. Copy it into one of "
              "them, or start the app with --allow-dir FOLDER.",
        "fr": "{path} est hors des dossiers de l'application ({folders}) ; elle ne lit que les fichiers qui s'y "
              "trouvent. Copiez-le dans l'un d'eux, ou lancez l'application avec --allow-dir DOSSIER.",
    },
    "err_model_missing": {"en": "The file {name} is gone; press ⟳ Refresh models.",
                          "fr": "Le fichier {name} a disparu ; cliquez sur ⟳ Actualiser les modèles."},
    "err_gpu_training": {"en": "A training is using the GPU right now; generate when it ends (or stop it).",
                         "fr": "Un entraînement utilise la carte graphique ; générez quand il sera fini (ou "
                               "arrêtez-le)."},
    "err_training_holds_model": {"en": "A training is running and holds the model; wait until it ends, or stop it.",
                                 "fr": "Un entraînement est en cours et occupe le modèle ; attendez la fin, ou "
                                       "arrêtez-le."},
    "err_busy": {"en": "The model is busy with another generation; try again in a moment.",
                 "fr": "Le modèle est occupé par une autre génération ; réessayez dans un instant."},
    "err_prompt_empty": {"en": "Write a prompt first.", "fr": "Écrivez d'abord un prompt."},
    "err_sampler": {"en": "Unknown sampler “{sampler}”; pick one in the list.",
                    "fr": "Échantillonneur « {sampler} » inconnu ; choisissez-en un dans la liste."},
    "err_range": {"en": "{name} must be between {low} and {high}, not {value}.",
                  "fr": "{name} doit être entre {low} et {high}, pas {value}."},
    "err_size_multiple": {"en": "{value} px does not fit this model: use a multiple of {multiple}.",
                          "fr": "{value} px ne convient pas à ce modèle : utilisez un multiple de {multiple}."},
    "err_compare_no_models": {"en": "Choose at least one file to compare.",
                              "fr": "Choisissez au moins un fichier à comparer."},
    "err_compare_no_prompts": {"en": "Write at least one prompt (one per line).",
                               "fr": "Écrivez au moins un prompt (un par ligne)."},
    "err_compare_too_many": {"en": "At most {max} images per grid: choose fewer files or prompts.",
                             "fr": "Au plus {max} images par grille : choisissez moins de fichiers ou de prompts."},
    "err_pick_base_and_tuned": {"en": "Choose the base model and the trained model first.",
                                "fr": "Choisissez d'abord le modèle de base et le modèle entraîné."},
    "err_pick_checkpoint": {"en": "Choose a checkpoint in the list, or upload one.",
                            "fr": "Choisissez un modèle dans la liste, ou envoyez-en un."},
    "err_format": {"en": "Unknown format {fmt}: choose .safetensors or .ckpt.",
                   "fr": "Format {fmt} inconnu : choisissez .safetensors ou .ckpt."},
    "err_bad_file_name": {"en": "“{name}”: give a file name only, without folders (e.g. joe-pruned.safetensors).",
                          "fr": "« {name} » : donnez seulement un nom de fichier, sans dossier (par ex. "
                                "joe-pruned.safetensors)."},
    "err_same_file": {"en": "{name} is the original itself: choose another output name, or tick “Replace” to replace "
                            "the original with its pruned version.",
                      "fr": "{name} est l'original lui-même : choisissez un autre nom, ou cochez « Remplacer » pour "
                            "remplacer l'original par sa version élaguée."},
    "err_output_exists": {"en": "{name} already exists: choose another name, or tick “Replace”.",
                          "fr": "{name} existe déjà : choisissez un autre nom, ou cochez « Remplacer »."},
    "err_session_busy": {"en": "A training is already running: stop it (or wait until it ends) before starting another.",
                         "fr": "Un entraînement est déjà en cours : arrêtez-le (ou attendez la fin) avant d'en "
                               "lancer un autre."},
    "err_run_name": {"en": "“{name}” cannot be a run name: use letters, digits, - _ and .",
                     "fr": "« {name} » ne peut pas être un nom d'entraînement : lettres, chiffres, - _ et ."},
    "err_setting_range": {"en": "{name} must be between {low} and {high}, not {value}.",
                          "fr": "{name} doit être entre {low} et {high}, pas {value}."},
    "err_setting_ints": {"en": "{name}: write whole numbers separated by commas, e.g. 42, 7.",
                         "fr": "{name} : écrivez des nombres entiers séparés par des virgules, par ex. 42, 7."},
}
