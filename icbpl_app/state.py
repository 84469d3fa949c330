"""What the app needs to know besides the runs: where runs and uploads live, the draft run a
user is setting up (and what is wrong with it, in the app's words), and the command line
that reproduces a run.

No Streamlit here: pages turn these values into widgets and messages.
"""
from __future__ import annotations

from pathlib import Path

from icbpl_core import params
from icbpl_core.backbones import BACKBONES, TIMM_PREFIX
from icbpl_core.backbones.availability import Availability, availability
from icbpl_core.cli import command_line
from icbpl_core.config import RunSpec, TrainConfig
from icbpl_core.datasets import DATASETS, get_entry
from icbpl_core.errors import IcbplError, ParamError
from icbpl_core.recipes import default_recipe
from icbpl_core.store.files import CACHE_ENV
from icbpl_core.store.runs import RUNS_DIR_ENV, default_runs_dir

DEFAULT_DATASET = params.param("dataset").default
PAGE = "Data & model"


def runs_dir() -> Path:
    """Where run folders go: $ICBPL_RUNS_DIR, else ./runs (relative to the working directory)."""
    return default_runs_dir()


def uploads_dir() -> Path:
    """Uploaded zip archives are kept beside the runs that use them."""
    return runs_dir() / ".uploads"


def own_data_sources() -> dict[str, str]:
    """The kinds of own data the registry offers ("folder", "archive") -> the dataset taking them."""
    return {e.own_data: name for name, e in DATASETS.items() if e.own_data}


def train_defaults(dataset: str) -> dict:
    """The table's training defaults with the dataset's own recipe on top (what `train` would use)."""
    try:
        return TrainConfig.for_dataset(dataset).to_dict()
    except IcbplError:     # an unknown dataset: the plain defaults
        return TrainConfig().to_dict()


class Draft:
    """A run being set up on the Data & model page: a value for every form parameter (plain
    values, kept in session state as a dict)."""

    def __init__(self, values: dict | None = None) -> None:
        values = dict(values or {})
        dataset = values.get("dataset") or DEFAULT_DATASET
        base = {**params.defaults("spec"), **params.defaults("launch"), **train_defaults(dataset)}
        self.values = {**base, **{k: v for k, v in values.items() if k in base}}

    def __getitem__(self, name: str):
        return self.values[name]

    def to_dict(self) -> dict:
        return dict(self.values)

    def spec(self) -> RunSpec:
        """The RunSpec this draft asks for (not yet resolved or checked)."""
        spec_fields = {p.name for p in params.at_level("spec")}
        train_fields = {p.name for p in params.at_level("train")}
        return RunSpec(**{k: v for k, v in self.values.items() if k in spec_fields},
                       train=TrainConfig(**{k: v for k, v in self.values.items() if k in train_fields}))


# a link never turns a download on by itself; an uploaded archive belongs to the session it came in
NOT_IN_URL = ("download",)
MAX_URL_VALUE = 1000


def draft_query(draft: Draft) -> dict[str, str]:
    """The draft's choices that differ from its dataset's defaults, as URL query parameters, so a
    reload of the page (or the link) brings them back."""
    entry = get_entry(draft["dataset"])
    base = Draft({"dataset": draft["dataset"], "backbone": entry.default_backbone,
                  "recipe": default_recipe(draft["dataset"])})
    out = {}
    for p in params.on("form"):
        value = draft[p.name]
        if p.name in NOT_IN_URL or (p.name == "data_root" and _from_upload(draft)):
            continue
        if value != base[p.name] or (p.name == "dataset" and value != DEFAULT_DATASET):
            out[p.name] = _to_text(value)
    return out


def draft_from_query(query: dict) -> dict:
    """Form values read back from URL query parameters. Anyone can write a link: every value goes
    through the table's check, and one that is unknown, malformed or out of range is left out."""
    out = {}
    for p in params.on("form"):
        if p.name in NOT_IN_URL or p.name not in query:
            continue
        try:
            value = p.check(_from_text(p, query[p.name]))
        except (ParamError, ValueError, TypeError, KeyError):
            continue
        if not p.options() or value in p.options():      # the form lists no timm:<name> or cuda:N
            out[p.name] = value
    if "data_root" in out and _from_upload(Draft(out)):
        del out["data_root"]
    return out


def _from_upload(draft: Draft) -> bool:
    return get_entry(draft["dataset"]).own_data == "archive"


def _to_text(value) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _from_text(p: params.Param, text):
    """A URL value as the parameter's type (ValueError or KeyError when it is not one)."""
    if not isinstance(text, str) or len(text) > MAX_URL_VALUE or any(ord(c) < 32 for c in text):
        raise ValueError("not a plain value")
    if text == "":
        return None
    if p.type is bool:
        return {"true": True, "false": False}[text]
    if p.type is int:
        return int(text)
    return float(text) if p.type is float else text


def problems(draft: Draft, n_images: int | None = None) -> list[str]:
    """Everything that stops this draft from training, in plain words (empty: good to go).

    n_images: the size of the (limited) dataset when it could be opened, to check the
    number of clusters against it."""
    try:
        entry = get_entry(draft["dataset"])
    except IcbplError as exc:
        return [message(exc)]
    out: list[str] = []
    if entry.needs_root and not draft["data_root"]:
        out.append("Choose a folder of images or upload a zip archive first.")
    try:
        spec = draft.spec().resolved()
    except IcbplError as exc:
        return out + [message(exc)]
    out += [weights_message(found) for found in weights_needed(spec) if found.state == "missing"]
    if n_images is not None:
        if n_images < 2:
            out.append(f"The dataset has {n_images} image(s); clustering needs at least 2.")
        elif spec.train.n_clusters > n_images:
            out.append(f"{spec.train.n_clusters} clusters is more than the {n_images} images: "
                       f"choose {n_images} clusters or fewer.")
    return out


def weights_needed(spec: RunSpec) -> list[Availability]:
    """Where the pretrained weights a resolved spec loads would come from: its backbone's, and
    those of the backbone it mines neighbours in."""
    found = [availability(spec.backbone, spec.pretrained, spec.weights)]
    if spec.neighbours_from in BACKBONES or spec.neighbours_from.startswith(TIMM_PREFIX):
        found.append(availability(spec.neighbours_from))
    return [f for f in found if not f.offline]


def downloads(draft: Draft) -> list[str]:
    """What this draft would download when it starts, in plain words (empty: nothing; a draft
    that cannot be resolved says so in problems())."""
    try:
        spec = draft.spec().resolved()
    except IcbplError:
        return []
    return [weights_message(found) for found in weights_needed(spec) if found.state == "download"]


def weights_message(found: Availability) -> str:
    """A backbone's missing weights as a sentence, with the backbones that need no download."""
    shipped = [n for n in offline_backbones() if n != found.backbone]
    other = f" Or choose {_either(shipped)}, which ship with the app." if shipped else ""
    text = found.detail if found.detail.startswith(found.backbone) else _capital(found.detail)
    return text.rstrip(".") + "." + other


def offline_backbones() -> list[str]:
    """The pretrained backbones whose weights are installed with the app."""
    return [n for n in sorted(BACKBONES) if BACKBONES[n].weights == "bundled" and availability(n).offline]


def backbone_tag(name: str) -> str:
    """"offline", "downloads 45 MB" or "missing", for a list of backbones."""
    try:
        return availability(name).tag
    except IcbplError:
        return "unknown"


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def label(name: str) -> str:
    p = params.BY_NAME.get(name)
    return p.label or name if p is not None else name


def message(exc: BaseException) -> str:
    """An engine error in the app's words: the field that fixes it, by its label on this page."""
    setting = getattr(exc, "setting", None)
    if isinstance(exc, ParamError):
        return f"{label(setting)}: {exc.problem}."
    return explain(str(exc), setting)


def explain(text: str, setting: str | None, upload: bool = False) -> str:
    """An engine error's text as a sentence, with what to change in the app to fix it; an upload is
    named as it was uploaded, not by where the app keeps it. `upload`: the error is about data that
    came as an uploaded archive (also found from an upload's path in the text)."""
    from .uploads import without_upload_paths

    shown = without_upload_paths(text)
    return _capital(shown) + "." + hint(setting, upload or shown != text)


def hint(setting: str | None, upload: bool = False) -> str:
    """What to change in the app for an engine error's setting ('' when nothing in the app fixes it);
    `upload`: the error is about an uploaded archive."""
    if upload and setting == "data_root":
        return f" Upload another zip archive on {PAGE}."
    p = params.BY_NAME.get(setting or "")
    if p is not None and "form" in p.where:
        return f" Change “{p.label}” on {PAGE}."
    if setting == "cache_dir":
        return f" Remove or fix it, or restart the app with {CACHE_ENV} set to another folder."
    if setting == "runs_dir":
        return f" Restart the app with {RUNS_DIR_ENV} set to a writable folder."
    return ""


def _capital(text: str) -> str:
    text = text.rstrip(".")
    return text[:1].upper() + text[1:]


def guidance_line(run) -> str | None:
    """"Guided by 152 images a person decided in run X (anchor, weight 1)" for a retrained run."""
    from icbpl_core.training import corrections

    guidance = corrections.read(run)
    if guidance is None:
        return None
    train = run.config.get("train") or {}
    guide = train.get("guide", "anchor")
    weight = f", weight {train.get('w_guide', 1.0):g}" if guide != "must-link" else ""
    return (f"Guided by {len(guidance.ids):,} images a person decided in run {guidance.source_run} "
            f"({guide}{weight}), into {guidance.n_clusters} clusters.")


def recipe_line(config: dict, choice: dict | None) -> str:
    """Which recipe a run trains with, and for the auto recipe what it chose and what was changed by hand."""
    recipe = config.get("recipe")
    if not recipe:
        return ""
    if recipe != "auto" or not choice:
        return f"recipe {recipe}"
    text = f"recipe auto: {choice.get('chosen')}"
    scores = (choice.get("scores") or {}).get(choice.get("chosen")) or {}
    criterion = choice.get("criterion")
    if criterion in scores:
        text += f" ({criterion.replace('_', ' ')} {scores[criterion]:.3f}, best of {len(choice.get('scores'))})"
    if choice.get("overridden"):
        text += " · changed by hand: " + ", ".join(label(n) for n in choice["overridden"])
    return text


def train_command(config: dict, runs_dir: str | Path = "runs", threads: int | None = None) -> str:
    """The `icbpl train` command that repeats a run (the command line's own rendering)."""
    return command_line(config, str(runs_dir), threads)
