"""docs/options.md: every command and every option, made from the parsers
themselves (`make docs` writes it; a test fails when the two disagree), so
that the reference cannot leave a command or an option out."""

from __future__ import annotations

import argparse
from typing import List, Tuple

from start_ray import options
from start_ray.entry import attach, batch


def _table(parser: argparse.ArgumentParser) -> List[str]:
    """One row per argument of `parser` (its help as --help prints it)."""
    rows = ["| argument | default | what it does |", "|---|---|---|"]
    for action in parser._actions:  # argparse has no public list of them
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = f" {action.metavar}" if isinstance(action.metavar, str) else ""
            name = ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)
        else:
            name = f"`{action.metavar if isinstance(action.metavar, str) else action.dest}`"
        default = action.default
        shown = ("-" if default in (None, False, [], argparse.SUPPRESS) or not
                 action.option_strings else f"`{default}`")
        text = (action.help or "").replace("%(default)s", str(default))
        text = text.split(" (default: ")[0] if shown != "-" else text
        if isinstance(action, argparse._VersionAction):
            text = "print start_ray's version and exit"
        rows.append(f"| {name} | {shown} | {text.replace('|', chr(92) + '|')} |")
    return rows


def _verbs(parser: argparse.ArgumentParser) -> List[Tuple[argparse.ArgumentParser, str]]:
    """Each subcommand's parser and its one-line help."""
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not found:
        return []
    helps = {choice.dest: choice.help or "" for choice in found[0]._choices_actions}
    return [(verb, helps.get(name, "")) for name, verb in found[0].choices.items()]


def markdown() -> str:
    """The whole reference: the commands, then the options of a job."""
    jobs = batch.parser()
    lines = ["# Commands and options", "",
             "Generated from the command-line parsers by `make docs`; each command's "
             "`--help` prints the same.", "",
             "| command | what it does |", "|---|---|",
             "| `python -m start_ray [OPTIONS] DRIVER [ARGS]` (or `start-ray`, the same "
             "program installed as a command) | one job: the cluster, the driver, the "
             "teardown; the options below |",
             "| `python -m start_ray --version` | print start_ray's version |",
             "| `python -m start_ray attach [RUN] [-- COMMAND]` | a command (a shell by "
             "default) on a running `--serve` cluster, with its address and token |",
             "| `python -m start_ray stop [RUN]` | end a `--serve` job and wait for it |"]
    for verb, what in _verbs(jobs):
        lines.append(f"| `{verb.prog} ...` | {what} |")
    lines.append("")
    for command in ("attach", "stop"):
        lines += [f"## `python -m start_ray {command}`", "", *_table(attach.parser(command)),
                  ""]
    for verb, _ in _verbs(jobs):
        lines += [f"## `{verb.prog}`", "", *_table(verb), ""]
    job = options.markdown().replace("# Options\n", "# Options of a job\n", 1).splitlines()
    lines += [("#" + line) if line.startswith("#") else line for line in job]
    return "\n".join(lines) + "\n"
