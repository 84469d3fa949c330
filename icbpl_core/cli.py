"""Command line: train, choose, suggest-k, resume, curate, export, runs (installed as `icbpl`; also `python -m icbpl_core`).

    icbpl train --dataset digits
    icbpl choose --dataset folder --data-root ~/photos --n-clusters 5
    icbpl suggest-k --dataset folder --data-root ~/photos --k-min 2 --k-max 15
    icbpl curate RUN_DIR --merge 3 7
    icbpl export RUN_DIR --out labels.csv [--curated]
    icbpl runs
Progress goes to stderr; `train` and `resume` print the run folder as stdout's last line, `suggest-k`
the suggested K.
Exit codes: 0 ok, 1 the run failed (the message says why), 2 wrong arguments, 130 stopped.

The train command's options are params.py's table; parsing them imports no torch, so
help and argument errors answer at once.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Callable

from . import events, params
from .store.files import CACHE_ENV
from .store.runs import RUNS_DIR_ENV

PROG = "icbpl"
GPUS = params.param("gpus")
EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 1, 2, 130
GROUPS = {"data": "data", "model": "model",
          "training": "training (defaults: the table's, then the dataset's recipe)"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def _parse_as(p: params.Param):
    """The argparse type of a parameter: its declared type, range and choices."""
    def parse(text: str):
        value = text
        if p.type in (int, float):
            try:
                value = p.type(text) if p.type is float else int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be {'a whole' if p.type is int else 'a'} number, "
                                                 f"got {text!r}") from None
        try:
            return p.check(value)
        except params.ParamError as exc:
            raise argparse.ArgumentTypeError(exc.problem) from None
    parse.__name__ = p.type.__name__
    return parse


def _help(p: params.Param) -> str:
    text = f"turn off (on by default): {p.help}" if p.default is True else p.help
    if p.options() and "one of" not in text:
        text += f"; one of: {', '.join(p.options())}" + (f", {p.open_prefix}<name>" if p.open_prefix else "")
    elif p.describe_range():
        text += f" ({p.describe_range()})"
    if p.type is not bool and p.default is not None:
        text += f" (default {p.default})"
    return text


def _metavar(p: params.Param) -> str:
    if p.metavar:
        return p.metavar
    return "NAME" if p.choices is not None else {int: "N", float: "X"}.get(p.type, "PATH")


def add_param_options(parser: argparse.ArgumentParser) -> None:
    """One option per command-line entry of the table, in groups; every default is None (not given)."""
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    for p in params.on("cli"):
        group = groups[p.group]
        if p.type is bool:
            group.add_argument(p.flag, *p.aliases, dest=p.name, default=None,
                               action="store_false" if p.default else "store_true", help=_help(p))
        else:
            group.add_argument(p.flag, *p.aliases, dest=p.name, type=_parse_as(p), default=None,
                               metavar=_metavar(p), help=_help(p))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="ICBPL image clustering: train, export, list runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    runs_help = f"where run folders are (default ${RUNS_DIR_ENV}, else ./runs)"
    cache_help = f"feature cache folder (default ${CACHE_ENV}, else ~/.cache/icbpl)"

    train = sub.add_parser("train", help="train a run on a dataset", description="Train ICBPL on a dataset.")
    add_param_options(train)
    train.add_argument("--runs-dir", metavar="DIR", help=runs_help)
    train.add_argument("--cache-dir", metavar="DIR", help=cache_help)
    train.add_argument("--quiet", action="store_true", help="no progress on stderr")

    choose = sub.add_parser("choose", help="choose the auto recipe for a dataset (what `train --recipe auto` "
                            "would use) and print it", description="Score every candidate recipe on a sample of "
                            "the images, without labels, and print the choice; options as for train.")
    add_param_options(choose)
    choose.add_argument("--cache-dir", metavar="DIR", help=cache_help)
    choose.add_argument("--out", metavar="FILE.json", help="also write the choice (candidates, scores, why) here")
    choose.add_argument("--quiet", action="store_true", help="no progress on stderr")

    suggest = sub.add_parser("suggest-k", help="suggest the number of clusters K for a dataset, from the images "
                             "alone", description="Score every K in a range with short ICBPL runs on a sample of the "
                             "images, without labels, and print the suggested K as stdout's last line; options as "
                             "for train (a given --backbone is the one whose features are scored).")
    add_param_options(suggest)
    suggest.add_argument("--k-min", type=int, default=None, metavar="A", help="smallest K scored (default 2)")
    suggest.add_argument("--k-max", type=int, default=None, metavar="B", help="largest K scored (default 15)")
    suggest.add_argument("--cache-dir", metavar="DIR", help=cache_help)
    suggest.add_argument("--out", metavar="FILE.json", help="also write every K's scores here")
    suggest.add_argument("--quiet", action="store_true", help="no progress on stderr")

    retrain = sub.add_parser(
        "retrain", help="train a new run guided by a curated run's corrections",
        description="Train a new run with a finished run's settings, guided by its curation: the images a person "
                    "verified, moved, merged or split off pull toward their curated cluster (--guide, --w-guide). "
                    "K is the number of curated clusters; options given here override the run's settings.")
    retrain.add_argument("run_dir", metavar="RUN_DIR", help="the curated run")
    add_param_options(retrain)
    retrain.add_argument("--runs-dir", metavar="DIR", help="where the new run folder goes (default: beside RUN_DIR)")
    retrain.add_argument("--cache-dir", metavar="DIR", help=cache_help)
    retrain.add_argument("--quiet", action="store_true", help="no progress on stderr")

    resume = sub.add_parser("resume", help="continue a stopped run from its last checkpoint")
    resume.add_argument("run_dir", metavar="RUN_DIR")
    resume.add_argument(GPUS.flag, dest="gpus", type=_parse_as(GPUS), default=None, metavar="N", help=_help(GPUS))
    resume.add_argument("--cache-dir", metavar="DIR", help=cache_help)
    resume.add_argument("--quiet", action="store_true")

    export = sub.add_parser("export", help="write a run's cluster labels as CSV")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--out", required=True, metavar="FILE.csv")
    export.add_argument("--force", action="store_true", help="overwrite FILE.csv if it exists")
    export.add_argument("--curated", action="store_true",
                        help="add the curation's columns: curated_cluster, cluster_name, flag, edited")

    curate = sub.add_parser(
        "curate", help="correct a run's clusters: name, merge, split, move, flag, undo, redo",
        description="Correct a finished run's clusters. Every edit is appended to the run's curation.jsonl; "
                    "the model's assignments are never changed. IDS: image indices as '3,17,40-45', or @FILE "
                    "(ids, or a CSV with an index column such as an export). With no edit, lists the clusters.")
    curate.add_argument("run_dir", metavar="RUN_DIR")
    edit = curate.add_mutually_exclusive_group()
    edit.add_argument("--name", nargs=2, metavar=("CLUSTER", "NAME"), help="name a cluster ('' clears the name)")
    edit.add_argument("--merge", nargs="+", type=_cluster, metavar="CLUSTER",
                      help="merge the clusters into the first one")
    edit.add_argument("--split", nargs=2, type=_cluster, metavar=("CLUSTER", "K"),
                      help="split a cluster into K parts (k-means on its latents)")
    edit.add_argument("--move", metavar="IDS", help="move images to the cluster given with --to")
    edit.add_argument("--flag", nargs=2, metavar=("IDS", "FLAG"), help="flag images: outlier, unsure, verified, "
                      "or none (clears it)")
    edit.add_argument("--undo", action="store_true", help="take back the latest edit in effect")
    edit.add_argument("--redo", action="store_true", help="bring back the latest undone edit")
    edit.add_argument("--history", action="store_true", help="list every edit, undone ones marked")
    curate.add_argument("--to", type=_cluster, metavar="CLUSTER", help="with --move: the cluster to move to")
    curate.add_argument("--preview", action="store_true", help="with --split: show the parts, change nothing")

    runs = sub.add_parser("runs", help="list runs with their status and metrics")
    runs.add_argument("--runs-dir", metavar="DIR", help=runs_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("train", "retrain", "resume") and (args.gpus or 1) > 1:
        from .training.launch import under_torchrun, with_torchrun
        if not under_torchrun():
            return with_torchrun(args.gpus, sys.argv[1:] if argv is None else argv)
    try:
        return {"train": _train, "retrain": _retrain, "choose": _choose, "suggest-k": _suggest_k, "resume": _resume, "export": _export, "curate": _curate,
                "runs": _runs}[args.command](args)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return EXIT_STOPPED


def spec_from_args(args):
    """The RunSpec the options ask for: given values over the recipe's, the table's and the dataset's
    defaults (an auto recipe's values are chosen later, from the images: with_choice)."""
    from .config import RunSpec, TrainConfig

    from .recipes import default_recipe, recipe_values

    given = {p.name: getattr(args, p.name) for p in params.on("cli")}
    dataset = given.get("dataset") or params.param("dataset").default
    given["recipe"] = given.get("recipe") or default_recipe(dataset)
    preset = recipe_values(given["recipe"])
    given = {**preset, **{k: v for k, v in given.items() if v is not None}}
    spec = {p.name: given[p.name] for p in params.at_level("spec") if given.get(p.name) is not None}
    train = {p.name: given[p.name] for p in params.at_level("train") if p.name in given}
    return RunSpec(**spec, train=TrainConfig.for_dataset(dataset, **train))


def with_choice(spec, args):
    """(spec, None), or for the auto recipe (spec with the chosen values, the Choice), the choice
    made from the images with progress on stderr."""
    if spec.recipe != "auto":
        return spec, None
    from .training.choice import choose

    spec.resolved()    # refuse what cannot run (a missing GPU, a bad combination) before minutes of choosing
    choice = choose(spec, set(_given(args)), progress=_progress(args, "choosing the recipe"),
                    cache_dir=args.cache_dir)
    if not args.quiet:
        print(f"auto recipe: {choice.why}\n{choice.table()}", file=sys.stderr, flush=True)
    return choice.applied(spec), choice


def _given(args) -> dict:
    """The table's options given on the command line, by parameter name."""
    return {p.name: getattr(args, p.name) for p in params.on("cli") if getattr(args, p.name, None) is not None}


def _progress(args, doing: str) -> Callable[[str, int, int], None]:
    """A progress reporter printing "doing: what done/total" on stderr at most once a second (and at
    the end of each part); silent with --quiet."""
    import time

    last = [0.0]

    def progress(what: str, done: int, total: int) -> None:
        if not args.quiet and (time.monotonic() - last[0] > 1.0 or done == total):
            last[0] = time.monotonic()
            print(f"{doing}: {what} {done:,}/{total:,}", file=sys.stderr, flush=True)
    return progress


def _runs_dir(args):
    from .store.runs import default_runs_dir
    return args.runs_dir or default_runs_dir()


def _train(args) -> int:
    from .store.runs import CHOICE_FILE

    def new_run():
        spec, choice = with_choice(spec_from_args(args), args)
        return spec.resolved(), _runs_dir(args), {} if choice is None else {CHOICE_FILE: choice.to_dict()}
    return _start(args, args.device or "auto", new_run)


def _retrain(args) -> int:
    """A new run guided by a curated run's corrections (training/corrections.py)."""
    from .errors import IcbplError
    from .store.runs import open_run
    from .training import corrections

    try:
        source = open_run(args.run_dir)
    except IcbplError as exc:
        return _fail(hint(exc), EXIT_USAGE)

    def new_run():
        guidance = corrections.from_curation(source)
        spec = corrections.retrain_spec(source, guidance, _given(args))
        if not args.quiet:
            print(f"retraining from {guidance.describe()}", file=sys.stderr)
        return spec, args.runs_dir or source.path.parent, {corrections.GUIDANCE_FILE: guidance.to_dict()}
    return _start(args, args.device or (source.config.get("train") or {}).get("device") or "auto", new_run)


def _start(args, device: str, new_run) -> int:
    """Create a run folder with what new_run() gives (spec, runs folder, files to write in it) and
    train it, in every process of a torchrun: rank 0 creates it and tells the others where it is."""
    from .config import RunSpec
    from .errors import IcbplError
    from .store import atomic
    from .store.runs import create_run, open_run
    from .training import launch

    try:
        world = launch.join(device)
    except IcbplError as exc:
        return _fail(hint(exc), EXIT_USAGE)
    verdict = None
    try:
        if world.main:
            spec, runs_dir, files = new_run()
            run = create_run(runs_dir, spec.to_dict())
            for name, content in files.items():
                atomic.write_json(run.file(name), content)
            verdict = str(run.path)
    except IcbplError as exc:
        verdict = launch.refused(hint(exc))
    verdict = launch.share(verdict, world)
    if launch.is_refusal(verdict):
        return _fail(launch.reason(verdict), EXIT_USAGE) if world.main else EXIT_USAGE
    run = open_run(verdict)
    return _execute(RunSpec.from_dict(run.config), run, resume=False, args=args, world=world)


def _choose(args) -> int:
    """Print the auto recipe's choice; stdout's last line is the `train` options it sets."""
    from .errors import IcbplError
    from .store import atomic

    args.recipe = "auto"
    try:
        _, choice = with_choice(spec_from_args(args), args)
    except IcbplError as exc:
        return _fail(hint(exc), EXIT_USAGE)
    if args.out:
        atomic.write_json(args.out, choice.to_dict())
    print(" ".join(f"--{k.replace('_', '-')} {v}" for k, v in choice.values.items() if v is not None))
    return 0


def _suggest_k(args) -> int:
    """Print every K's scores on stderr; stdout's last line is the suggested K alone."""
    from .errors import IcbplError
    from .store import atomic
    from .training.suggest_k import K_MAX, K_MIN, suggest_k

    k_min = K_MIN if args.k_min is None else args.k_min
    k_max = max(K_MAX, k_min) if args.k_max is None else args.k_max
    try:
        spec = spec_from_args(args)
        spec.resolved()    # refuse what cannot run before minutes of scoring
        suggestion = suggest_k(spec, k_min, k_max, set(_given(args)), progress=_progress(args, "suggesting K"),
                               cache_dir=args.cache_dir)
    except IcbplError as exc:
        return _fail(hint(exc), EXIT_USAGE)
    if not args.quiet:
        print(f"suggested K: {suggestion.why}\n{suggestion.table()}", file=sys.stderr, flush=True)
    if args.out:
        atomic.write_json(args.out, suggestion.to_dict())
    print(suggestion.k)
    return 0


def _resume(args) -> int:
    from .config import RunSpec
    from .errors import IcbplError
    from .store.runs import open_run
    from .training import launch

    try:
        run = open_run(args.run_dir)
        spec = RunSpec.from_dict(run.config)
        world = launch.join(spec.train.device)
    except IcbplError as exc:
        return _fail(str(exc), EXIT_FAILED)
    verdict = None
    if world.main:     # checked once, before any process starts: the others would see rank 0 running
        status = run.status()
        if status["state"] == "running":
            verdict = launch.refused(f"run {run.id} is still running (pid {status.get('pid')})")
        elif status["state"] == "finished":
            verdict = launch.refused(f"run {run.id} has already finished")
    verdict = launch.share(verdict, world)
    if launch.is_refusal(verdict):
        return _fail(launch.reason(verdict), EXIT_FAILED) if world.main else EXIT_FAILED
    return _execute(spec, run, resume=True, args=args, world=world)


def _execute(spec, run, resume: bool, args, world=None) -> int:
    from .training import launch, pipeline
    from .training.trainer import StopRequested

    if world is not None and not world.main:     # the other processes of a torchrun: silent
        try:
            pipeline.run(spec, run, resume=resume, cache_dir=args.cache_dir)
        except StopRequested:
            return EXIT_STOPPED
        except Exception:  # noqa: BLE001 - rank 0 records and reports the failure
            return EXIT_FAILED
        launch.finish(world)
        return 0
    print(f"run folder: {run.path}", file=sys.stderr)
    try:
        metrics = pipeline.run(spec, run, resume=resume, on_event=None if args.quiet else _print_event,
                               cache_dir=args.cache_dir)
    except StopRequested as exc:
        print(f"{exc}; continue with: {PROG} resume {run.path}", file=sys.stderr)
        print(run.path)
        return EXIT_STOPPED
    except Exception as exc:  # noqa: BLE001 - every failure is recorded in the run and shown in one line
        return _fail(f"{hint(exc)} (run folder: {run.path})", EXIT_FAILED)
    if world is not None:
        launch.finish(world)
    if not args.quiet and "acc" in metrics:
        print(f"ACC {metrics['acc']:.4f}  NMI {metrics['nmi']:.4f}  ARI {metrics['ari']:.4f}  "
              f"clusters used {metrics['n_clusters_used']}/{metrics['n_clusters']}", file=sys.stderr)
    print(run.path)
    return 0


def _export(args) -> int:
    from .errors import RunError
    from .store.export import export_csv
    from .store.runs import open_run

    try:
        rows = export_csv(open_run(args.run_dir), args.out, force=args.force, curated=args.curated)
    except RunError as exc:
        return _fail(hint(exc), EXIT_FAILED)
    print(f"wrote {rows} rows to {args.out}", file=sys.stderr)
    return 0


def _cluster(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a cluster is a whole number, got {text!r}") from None


def _curate(args) -> int:
    from .errors import RunError
    from .store import curation as cur
    from .store.runs import open_run

    if args.move is not None and args.to is None:
        return _fail("--move needs --to CLUSTER", EXIT_USAGE)
    if (args.to is not None and args.move is None) or (args.preview and args.split is None):
        return _fail("--to goes with --move, --preview with --split", EXIT_USAGE)
    ids = lambda text: cur.read_ids(text[1:]) if text.startswith("@") else cur.parse_ids(text)  # noqa: E731
    try:
        c = cur.Curation(open_run(args.run_dir))
        if args.name:
            entry = c.name(_cluster_arg(args.name[0]), args.name[1])
        elif args.merge:
            entry = c.merge(args.merge)
        elif args.split and args.preview:
            preview = c.preview_split(*args.split)
            for into, size in zip(preview.into, preview.sizes):
                print(f"cluster {into:<6} {size:>7} images")
            print(f"preview only: cluster {preview.cluster} is unchanged; apply it without --preview",
                  file=sys.stderr)
            return 0
        elif args.split:
            entry = c.split(*args.split)
        elif args.move is not None:
            entry = c.move(ids(args.move), args.to)
        elif args.flag:
            entry = c.flag(ids(args.flag[0]), args.flag[1])
        elif args.undo or args.redo:
            entry = c.undo() if args.undo else c.redo()
        else:
            _print_curation(c.state(), history=args.history)
            return 0
    except cur.CurationError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except RunError as exc:
        return _fail(hint(exc), EXIT_FAILED)
    print(f"edit {entry['seq']}: {cur.describe(entry)}", file=sys.stderr)
    return 0


def _cluster_arg(text: str) -> int:
    from .store.curation import CurationError
    try:
        return _cluster(text)
    except argparse.ArgumentTypeError as exc:
        raise CurationError(str(exc)) from None


def _print_curation(state, history: bool) -> None:
    from .store.curation import describe

    if history:
        for e in state.history:
            mark = "" if e["in_effect"] or e["op"] in ("undo", "redo") else "  (undone)"
            print(f"{e['seq']:>4}  {e['time']}  {describe(e)}{mark}")
        if not state.history:
            print("no edits yet", file=sys.stderr)
        return
    print(f"{'cluster':>7}  {'size':>7}  {'model':>7}  {'flagged':>7}  name")
    for c in state.clusters():
        members = state.cluster == c
        print(f"{c:>7}  {int(members.sum()):>7}  {int((state.raw == c).sum()):>7}  "
              f"{int((state.flag[members] != '').sum()):>7}  {state.name_of(c)}")
    print(f"{len(state.done)} edit(s) in effect, {int(state.edited.sum())} image(s) edited, "
          f"{len(state.undone)} undone edit(s) to redo", file=sys.stderr)


def _runs(args) -> int:
    from .store.runs import list_runs

    directory = _runs_dir(args)
    runs = list_runs(directory)
    if not runs:
        print(f"no runs in {directory}", file=sys.stderr)
        return 0
    print(f"{'run':<48} {'state':<11} {'epoch':>7} {'acc':>6} {'nmi':>6} {'ari':>6}")
    for run in runs:
        s = run.summary()
        epoch = f"{s['epoch'] or 0}/{s['epochs'] or '?'}"
        fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        print(f"{s['run']:<48} {s['state']:<11} {epoch:>7} {fmt(s['acc']):>6} {fmt(s['nmi']):>6} {fmt(s['ari']):>6}")
    return 0


def _print_event(event: dict) -> None:
    text = events.line(event)
    if text is not None:
        print(text, file=sys.stderr, flush=True)


def hint(exc: BaseException) -> str:
    """An engine error in the command line's words: the option that fixes it, named as a flag."""
    setting = getattr(exc, "setting", None)
    p = params.BY_NAME.get(setting or "")
    if isinstance(exc, params.ParamError) and p is not None:
        return f"{p.flag} {exc.problem}"
    if p is not None and "cli" in p.where:
        return f"{exc} ({p.flag})"
    if setting == "cache_dir":
        return f"{exc}; remove or fix it, or choose another cache folder with --cache-dir or {CACHE_ENV}"
    if setting == "force":
        return f"{exc} with --force"
    if setting == "runs_dir":
        return f"{exc}; choose another with --runs-dir or {RUNS_DIR_ENV}"
    return str(exc)


def command_line(config: dict, runs_dir: str | None = None, threads: int | None = None) -> str:
    """The `icbpl train` command that repeats a run (config.json): every setting it was trained with;
    with `threads` (metrics.json's), prefixed by OMP_NUM_THREADS, since the thread count changes
    float sums and so the last digits of a result."""
    from .config import RunSpec

    spec = RunSpec.from_dict(config)
    args = [PROG, "train"]
    for p in params.on("cli"):
        if p.level == "launch" or p.name == "recipe":   # how it was started; the recipe's values are all there
            continue
        value = getattr(spec.train if p.level == "train" else spec, p.name)
        if p.type is bool:
            args += [p.flag] if value != p.default else []
        elif value is not None:
            args += [p.flag, repr(value) if isinstance(value, float) else str(value)]
    if runs_dir:
        args += ["--runs-dir", str(runs_dir)]
    if threads:
        args.insert(0, f"OMP_NUM_THREADS={int(threads)}")
    return " ".join(shlex.quote(a) for a in args)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
