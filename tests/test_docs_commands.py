"""Every command written in README.md and docs/*.md exists: each ``ste-opt`` command line of a
fenced code block (and each inline ```ste-opt ...``` span) parses with the real CLI parser, with
the sub-command and every option it names, none of them a hidden deprecated alias; each
``make TARGET`` is a target of the Makefile (``make -n TARGET``); each
``python -m benchmarks.NAME`` is a benchmark module with ``main``."""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def _blocks(text: str) -> list[str]:
    return [m.group(1) for m in FENCE.finditer(text)]


def _command_lines(block: str) -> list[str]:
    """Logical lines of a shell block; when some start with ``$ ``, only those are commands."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip()]
    if any(ln.startswith("$ ") for ln in lines):
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    return lines


def _segments(line: str) -> list[list[str]]:
    """Shell words of each command of ``a && b | c; d`` (comments dropped)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return []
    out, cur = [], []
    for w in words:
        if w in ("&&", "||", "|", ";"):
            out.append(cur)
            cur = []
        elif w in (">", "<", "2>", ">>"):
            cur.append(None)  # the redirection target follows: dropped below
        else:
            cur.append(w)
    out.append(cur)
    cleaned = []
    for seg in out:
        words, skip = [], False
        for w in seg:
            if w is None:
                skip = True
                continue
            if skip:
                skip = False
                continue
            words.append(w)
        if words:
            cleaned.append(words)
    return cleaned


def _expand(words: list[str]) -> list[str]:
    """``[--backend ray]`` -> ``--backend ray``; ``ste|sflam`` -> ``ste``; ``N`` -> ``1``."""
    out = []
    for w in words:
        w = w.strip("[]")
        if not w or w == "...":
            continue
        if "|" in w and not w.startswith("-"):
            w = w.split("|")[0]
        elif w.startswith("--") and "|" in w:
            w = w.split("|")[0]
        if re.fullmatch(r"[A-Z][A-Z_]{0,7}", w):  # a placeholder value: N, S, PATH, DIR
            w = "1"
        out.append(w)
    return out


def _collect():
    ste, make, bench = [], [], []
    for path in DOCS:
        text = path.read_text()
        rel = path.relative_to(ROOT)
        for block in _blocks(text):
            for line in _command_lines(block):
                if re.match(r"ste-opt( [\w-]+)?: ", line):  # output: an error message
                    continue
                for seg in _segments(line):
                    if seg[0] == "ste-opt" or seg[:2] == [".venv/bin/ste-opt"]:
                        ste.append((str(rel), line, _expand(seg[1:])))
                    elif seg[0] == "make" and len(seg) > 1:
                        make.extend((str(rel), line, t) for t in seg[1:] if not t.startswith("-"))
                    elif seg[:2] == ["python", "-m"] and seg[2].startswith("benchmarks."):
                        bench.append((str(rel), line, seg[2]))
        for m in INLINE.finditer(text):
            span = m.group(1)
            # a command, not a message (`ste-opt solve: error`) or a pattern (`ste-opt COMMAND`)
            if re.match(r"ste-opt [a-z][a-z-]*(\s|$)", span):
                for seg in _segments(span):
                    if seg[0] == "ste-opt":  # inline: may be partial (`ste-opt generate --x N`)
                        ste.append((str(rel), span, ["INLINE", *_expand(seg[1:])]))
            elif span.startswith("make ") and re.fullmatch(r"make [\w-]+", span):
                make.append((str(rel), span, span.split()[1]))
            elif re.match(r"python -m benchmarks\.\w+$", span.split(" --")[0]):
                bench.append((str(rel), span, span.split()[2]))
    return ste, make, bench


STE, MAKE, BENCH = _collect()


def test_the_docs_have_commands_to_check():
    assert len(STE) >= 20 and len(MAKE) >= 4 and len(BENCH) >= 4
    assert {"generate", "solve", "methods", "bench", "pareto", "pretrain", "train", "genfl",
            "demo"} <= {argv[0] for _, _, argv in STE if argv}
    assert any(argv[0] == "INLINE" for _, _, argv in STE)


def _parser():
    from ste_opt.cli import build_parser

    return build_parser()


def _hidden_options(parser) -> dict[str, set[str]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {s for a in p._actions if a.help == argparse.SUPPRESS for s in a.option_strings}
            for name, p in sub.choices.items()}


@pytest.mark.parametrize("where,line,argv", STE, ids=[f"{w}: {' '.join(a)}"[:80] for w, _, a in STE])
def test_ste_opt_command_parses(where, line, argv):
    parser = _parser()
    if argv[0] == "INLINE":  # a mention in the text: the command and each option it names exist
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert argv[1] in sub.choices, f"{where}: `{line}`: no command {argv[1]!r}"
        p = sub.choices[argv[1]]
        known = {s for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
        named = {a.split("=")[0] for a in argv[2:] if a.startswith("-") and a != "-"}
        assert named <= known, f"{where}: `{line}`: {argv[1]} has no option(s) {named - known}"
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                pytest.fail(f"{where}: `{line}` does not parse: {err.getvalue().strip()}")
            return
    assert getattr(args, "func", None) is not None, f"{where}: `{line}` names no sub-command"
    hidden = _hidden_options(parser)[argv[0]]
    used = {a.split("=")[0] for a in argv if a.startswith("-")}
    assert not (used & hidden), f"{where}: `{line}` uses deprecated option(s) {used & hidden}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("where,line,target", MAKE, ids=[f"{w}: make {t}" for w, _, t in MAKE])
def test_make_target_exists(where, line, target):
    proc = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"{where}: `{line}`: {proc.stderr.strip()}"


@pytest.mark.parametrize("where,line,module", BENCH, ids=[f"{w}: {m}" for w, _, m in BENCH])
def test_benchmark_module_exists(where, line, module):
    path = ROOT / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{where}: `{line}`: no {path.relative_to(ROOT)}"
    assert re.search(r"^def main\(", path.read_text(), re.M), f"{path} has no main()"


def test_the_checker_catches_wrong_commands():
    parser = _parser()
    for argv in (["solve", "x.yaml", "--no-such-option"], ["no-such-command"]):
        with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
            parser.parse_args(argv)
    assert "--out" in _hidden_options(parser)["demo"]
    assert _expand(["methods", "[--problem", "ste|sflam]"]) == ["methods", "--problem", "ste"]
    assert _segments("a x && ste-opt solve s.yaml > out.txt # c") == [["a", "x"],
                                                                      ["ste-opt", "solve", "s.yaml"]]
    proc = subprocess.run(["make", "-n", "test-all"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
