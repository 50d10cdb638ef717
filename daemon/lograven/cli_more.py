"""More subcommands, registered by `cli.build_parser` through `register`.

Each command is one small `_register_<name>` function that adds its
subparser and sets ``handler=<function(args) -> int>``; the handlers parse
nothing themselves and call library functions that tests call too.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from lograven.errors import LogravenError
from lograven.osutil import write_text_replacing

AddParser = Callable[[object, str, str, str], argparse.ArgumentParser]
FormatArgs = Callable[..., None]  # cli._format_args

BGL_FORMAT = r"regex:^\S+ \S+ (?P<host>\S+) (?P<timestamp>\S+) \S+ \S+ (?P<program>\S+) \S+ (?P<message>.*)$"
HDFS_FORMAT = r"regex:^(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\S+) (?P<program>\S+): (?P<message>.*)$"


def _is_standard_output(path: str) -> bool:
    """Whether `path` is the file standard output already writes (/dev/stdout, /dev/fd/1, or the file
    `> FILE` redirected it to): opened again for writing, it was truncated under the table printed
    before, or it lost what `>>` had kept."""
    try:
        st, out = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino)


def register(sub, add: AddParser, format_args: FormatArgs) -> None:
    """Add this module's subcommands to the `lograven` parser."""
    _register_evaluate(sub, add, format_args)


# ----------------------------------------------------------------- evaluate
_EVALUATE_EPILOG = f"""\
modes (exactly one):
  --structured FILE       message types: learn types from a Loghub *_structured.csv's Content
                          column, report grouping accuracy (GA) against its EventId column
  --labels bgl LOGFILE    line labels: first token '-' = normal, else an alert category (stripped
                          before parsing); train on the normal lines of the first --train-fraction,
                          precision/recall/F1 over the remaining lines
  --sessions CSV LOGFILE  session labels (BlockId,Label with Normal/Anomaly) and --stream-key:
                          sessions ordered by first appearance, train on the normal sessions of the
                          first --train-fraction (--session-split normal: the first --train-fraction
                          of the normal sessions), a test session is flagged when any line is

examples:
  lograven evaluate --structured Linux_2k.log_structured.csv
  lograven evaluate --labels bgl --format '{BGL_FORMAT}' BGL_2k.log
  lograven evaluate --sessions hdfs_dev_labels.csv --stream-key 'blk_-?\\d+' \\
      --format '{HDFS_FORMAT}' hdfs_dev.log
  lograven evaluate --labels bgl --format '{BGL_FORMAT}' --sequence-rule top_k --top-k 9 \\
      --json result.json BGL_2k.log

Output: a table on stdout and, with --json FILE, the full result as JSON (--json - prints the
JSON on stdout and the table on stderr). Definitions and the JSON schema: docs/evaluation.md.
"""


# Which modes use each option of `lograven evaluate` (the options beside the mode itself): an option given
# to a mode that does not use it is refused, never ignored. Every option must be here (a test checks).
# Options that a mode refuses have the default None, so that "given" is "not None".
_ALL, _DETECTION = ("structured", "labels", "sessions"), ("labels", "sessions")
EVALUATE_OPTION_MODES: dict[str, tuple[str, ...]] = {
    "--config": _ALL,
    "--examples": _ALL,
    "--json": _ALL,
    "--train-fraction": _DETECTION,
    "--format": _DETECTION,
    "--stream-key": _DETECTION,  # --sessions: required, the session; --labels: optional, the stream
    "--stream": ("labels",),  # --sessions: the sessions are the streams
    "--session-split": ("sessions",),
    "--stream-end": ("sessions",),
    "--feedback": _DETECTION,
    "--feedback-every": _DETECTION,  # with --feedback learn
    "--model-dir": _DETECTION,
    "--sequence-rule": _DETECTION,
    "--relative-threshold": _DETECTION,
    "--threshold": _DETECTION,
    "--top-k": _DETECTION,
    "--ae-margin": _DETECTION,
    "--batch-size": _DETECTION,
}
_DEST = {"--format": "fmt"}  # an option's attribute in the parsed arguments, where it is not its name


def _given(args, option: str) -> bool:
    return getattr(args, _DEST.get(option, option[2:].replace("-", "_"))) is not None


def _refuse_options_of_other_modes(args, mode: str) -> None:
    """Refuse every option given that `mode` does not use (EVALUATE_OPTION_MODES), naming them, the
    modes they are for, and the mode; also --feedback-every without --feedback learn."""
    given = [o for o, modes in EVALUATE_OPTION_MODES.items() if mode not in modes and _given(args, o)]
    if given:
        groups: dict[tuple[str, ...], list[str]] = {}
        for o in given:
            groups.setdefault(EVALUATE_OPTION_MODES[o], []).append(o)
        said = "; ".join(f"{', '.join(opts)}: for {' and '.join('--' + m for m in modes)}"
                         for modes, opts in groups.items())  # fmt: skip
        why = ": --structured learns types from the CSV's Content column alone" if mode == "structured" else ""
        raise LogravenError(f"{said}; not for --{mode}{why} (drop {'it' if len(given) == 1 else 'them'})")
    if mode in ("labels", "sessions") and args.feedback_every is not None and args.feedback != "learn":
        raise LogravenError("--feedback-every: for --feedback learn (the lines between two learn runs); add "
                            "--feedback learn, or drop --feedback-every")  # fmt: skip


def _register_evaluate(sub, add: AddParser, format_args: FormatArgs) -> None:
    p = add(sub, "evaluate", "measure message types and detectors on labelled logs (GA, precision/recall/F1)",
            _EVALUATE_EPILOG)  # fmt: skip
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--structured", metavar="FILE", help="Loghub *_structured.csv (Content, EventId): grouping accuracy")
    mode.add_argument("--labels", choices=["bgl"], help="line labels in the log itself: bgl (first token '-' = normal)")
    mode.add_argument("--sessions", metavar="CSV", help="session labels BlockId,Label (Normal/Anomaly); needs --stream-key")
    p.add_argument("logfile", nargs="?", metavar="LOGFILE", help="the labelled log (not with --structured)")
    p.add_argument("--config", metavar="YAML", help="YAML config (training.* and detectors.* options); defaults if omitted")
    format_args(p, config_stream=False)
    p.add_argument("--train-fraction", type=float, default=None, metavar="F",
                   help="share of the lines (--labels) or sessions (--sessions), in order, used for training (default 0.8)")
    p.add_argument("--session-split", choices=["pool", "normal"], default=None,
                   help="--sessions: 'pool' (default) trains on the normal sessions among the first --train-fraction "
                        "of sessions and tests the sessions after them; 'normal' (DeepLog's protocol) trains on the "
                        "first --train-fraction of the normal sessions and tests every other session, including the "
                        "anomalous sessions among the training ones")
    p.add_argument("--stream-end", action=argparse.BooleanOptionalAction, default=None,
                   help="--sessions: learn where sessions end and judge each test session's end, so sessions "
                        "that stop early are found (default: training.sequence.stream_end of --config, off "
                        "without one, as in the daemon: sessions still open when the log stops look like "
                        "sessions that stopped early)")
    p.add_argument("--feedback", choices=["none", "allow", "learn"], default=None,
                   help="'allow': also report the combined detector when a simulated operator allowlists every "
                        "false alarm as it comes, as `lograven allow ALERT_ID` would (a '+ allowlist' row: "
                        "what an admin is left with, and how many rules it took); 'learn': the operator runs "
                        "`lograven learn` on the false alarms of every --feedback-every test lines (a '+ learn' row); "
                        "default none")
    p.add_argument("--feedback-every", type=int, default=None, metavar="N",
                   help="--feedback learn: test lines between two learn runs (default 100)")
    p.add_argument("--model-dir", metavar="DIR", help="keep the trained bundle in DIR (default: a temporary directory)")
    p.add_argument("--sequence-rule", choices=["relative", "probability", "top_k"],
                   help="override detectors.sequence.rule")
    p.add_argument("--relative-threshold", type=float, metavar="X", help="override detectors.sequence.relative_threshold")
    p.add_argument("--threshold", type=float, metavar="P", help="override detectors.sequence.threshold (rule probability)")
    p.add_argument("--top-k", type=int, metavar="K", help="override detectors.sequence.top_k")
    p.add_argument("--ae-margin", type=float, metavar="M", help="override detectors.autoencoder.margin")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="lines per detector batch (default 1024)")
    p.add_argument("--examples", type=int, default=20, metavar="N", help="missed anomalies / false alarms kept in the JSON (default 20)")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-': standard output)")
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from lograven import evaluate as ev
    from lograven.config import Config, load_config
    from lograven.progress import ProgressBar

    cfg = load_config(args.config) if args.config else Config()
    if args.examples < 0:
        raise LogravenError(f"--examples must be 0 or more, got {args.examples}")
    if args.json and args.json != "-":
        # said now, not after minutes of training
        target = Path(args.json)
        try:
            out_dir = target.resolve().parent
        except (OSError, RuntimeError) as e:  # a loop of links (RuntimeError before Python 3.13)
            raise LogravenError(f"--json {args.json}: cannot be resolved ({e}); give another path") from None
        if target.is_dir():
            raise LogravenError(f"--json {args.json}: is a directory; give a file name")
        if not out_dir.is_dir() or not os.access(out_dir, os.W_OK):
            raise LogravenError(f"--json {args.json}: cannot write there ({out_dir} is not a writable directory)")
        if target.exists() and not os.access(target, os.W_OK):
            raise LogravenError(f"--json {args.json}: the file is not writable")
        inputs = [p for p in (args.structured, args.sessions, args.logfile, args.config) if p and p != "-"]
        for given in inputs:
            try:
                same = target.exists() and os.path.samefile(target, given)
            except OSError:
                same = False
            if same:
                raise LogravenError(f"--json {args.json}: is the input {given}, which the result would overwrite; "
                                    "give another file name")
    mode = "structured" if args.structured else "labels" if args.labels else "sessions"
    _refuse_options_of_other_modes(args, mode)
    if getattr(args, "model_dir", None) and not args.structured:
        from lograven.bundle import check_bundle_target

        check_bundle_target(args.model_dir, "--model-dir")  # said now, not after the training
    if args.structured:
        if args.logfile:
            raise LogravenError("--structured reads the CSV only; drop the LOGFILE argument")
        result = ev.evaluate_types(args.structured, config=cfg, max_errors=args.examples)
    else:
        if not args.logfile:
            raise LogravenError("give the labelled LOGFILE, e.g. `lograven evaluate --labels bgl BGL_2k.log`")
        settings = ev.detector_settings(
            cfg, sequence_rule=args.sequence_rule, sequence_relative_threshold=args.relative_threshold,
            sequence_threshold=args.threshold, sequence_top_k=args.top_k, autoencoder_margin=args.ae_margin,
        )  # fmt: skip
        fmt = args.fmt or (cfg.sources[0].format if args.config and cfg.sources else "syslog")
        setup = ev.Setup(
            fmt=fmt, train_fraction=0.8 if args.train_fraction is None else args.train_fraction,
            model_dir=Path(args.model_dir) if args.model_dir else None,
            batch_size=1024 if args.batch_size is None else args.batch_size, max_examples=args.examples,
            max_line_bytes=cfg.runtime.max_line_bytes, stream_end=args.stream_end,
            session_split=args.session_split or "pool", feedback=args.feedback or "none",
            feedback_every=100 if args.feedback_every is None else args.feedback_every,
        )  # fmt: skip
        bar = ProgressBar(enabled=not args.quiet)
        try:
            if args.labels:
                if args.stream_key:
                    setup.stream = ev.regex_stream_spec(args.stream_key)
                elif args.stream:
                    setup.stream = args.stream
                result = ev.evaluate_line_labels(args.logfile, labels=args.labels, config=cfg, settings=settings,
                                                 setup=setup, progress=bar)  # fmt: skip
            else:
                if not args.stream_key:
                    raise LogravenError("--sessions needs --stream-key REGEX naming each line's session, e.g. 'blk_-?\\d+'")
                result = ev.evaluate_sessions(args.logfile, args.sessions, args.stream_key, config=cfg,
                                              settings=settings, setup=setup, progress=bar)  # fmt: skip
        finally:
            bar.close()
        ev.warn_unparsed(result)
    text = ev.dumps(result)
    table = result.table()
    if args.json == "-" or (args.json and _is_standard_output(args.json)):  # --json /dev/stdout: as `-`, not a file reopened
        print(text)
        print(table, file=sys.stderr)
        return 0
    unprinted: BaseException | None = None
    try:
        print(table)  # first: a --json that cannot be written now (a full disk) does not lose the run's table
        sys.stdout.flush()
    except (BrokenPipeError, LogravenError) as e:  # `| head`, a full disk: the --json file is still written
        unprinted = e
    if args.json:
        try:
            write_text_replacing(args.json, text + "\n")  # a full disk keeps the previous result whole
        except OSError as e:
            if unprinted is None:
                sys.stdout.flush()
            raise LogravenError(f"{args.json}: cannot write the JSON result ({e.strerror or e}); the table above "
                                "is the run's result; give another --json path, or --json - for standard output") from None
    if unprinted is not None:
        raise unprinted
    return 0
