"""``ternac generate`` streams: each token reaches the caller as its step finishes, in order,
the same tokens as the final report (golden and interp in process; verilator through the
simulator's progress file); ``ternac --help`` imports no torch."""
import io
import subprocess
import sys
import threading

from ternac.lm_cli import TokenPrinter

PROMPT, N = "RO", 5


def test_golden_tokens_arrive_one_a_step_in_order(monkeypatch):
    from ternac.golden.lm_int import IntLM
    from ternac.runner import generate
    steps = []
    real_step = IntLM.step

    def counting_step(self, *a, **kw):
        out = real_step(self, *a, **kw)
        steps.append(1)
        return out
    monkeypatch.setattr(IntLM, "step", counting_step)
    got = []
    r = generate(PROMPT, N, "golden", progress=False,
                 on_token=lambda tok, ch: got.append((tok, ch, len(steps))))
    # Token k comes right after step len(prompt) - 1 + k, before the next step runs.
    assert [s for _, _, s in got] == [len(PROMPT) + k for k in range(N)]
    assert [t for t, _, _ in got] == r["token_ids"]
    assert "".join(c for _, c, _ in got) == r["text"] and r["matches_golden"]
    assert len(steps) == len(PROMPT) + N - 1          # nothing ran after the last token


def test_interp_streams_and_sampling_too():
    from ternac.runner import generate
    got = []
    r = generate(PROMPT, N, "interp", progress=False, seed=3,
                 on_token=lambda tok, ch: got.append((tok, ch)))
    assert [t for t, _ in got] == r["token_ids"] and len(got) == N
    assert "".join(c for _, c in got) == r["text"]
    assert r["matches_golden"] and r["logit_mismatches"] == 0


def test_verilator_tokens_come_while_the_simulator_runs():
    """The bench appends a record a step to a file the host tails: the tokens equal the
    RTL's and at least the first arrives from the watcher thread, i.e. before the
    simulator process ended (the rest would be read by the main thread after it)."""
    from ternac.runner import generate
    main = threading.get_ident()
    got = []
    r = generate(PROMPT, 16, "verilator", progress=False,
                 on_token=lambda tok, ch: got.append((tok, ch, threading.get_ident())))
    assert [t for t, _, _ in got] == r["token_ids"] and len(got) == 16
    assert "".join(c for _, c, _ in got) == r["text"] and r["matches_golden"]
    assert got[0][2] != main, "the first token was only read after the simulator ended"


def test_token_printer_writes_the_prompt_then_each_character():
    out = io.StringIO()
    p = TokenPrinter("AB", 3, out=out)
    assert not p.finish() and out.getvalue() == ""     # nothing streamed: nothing printed
    p(1, "x")
    assert out.getvalue() == "ABx"
    p(2, "y")
    p(3, "z")
    assert out.getvalue() == "ABxyz\n" and p.text == "xyz"
    assert p.finish() and out.getvalue() == "ABxyz\n"  # the line was already ended
    early = io.StringIO()
    q = TokenPrinter("A", 5, out=early)
    q(1, "b")
    assert q.finish() and early.getvalue() == "Ab\n"   # a run that stopped: line ended


def test_cli_output_is_unchanged_by_streaming(capsys, tmp_path):
    """stdout is the prompt and the text on one line (as before streaming), then the
    summary; the JSON report is the one documented."""
    import json

    from ternac.cli import main
    js = tmp_path / "r.json"
    assert main(["generate", "--prompt", PROMPT, "--tokens", str(N), "--backend", "golden",
                 "--quiet", "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    out = capsys.readouterr().out
    head = f"{PROMPT}{r['text']}\n"
    # The golden backend is the golden model: it claims no comparison (issue 12).
    assert out.startswith(head + "-- backend golden: 5 tokens greedy, the integer golden "
                                 "model itself"), out
    assert "equal to" not in out and r["compared"] is False
    assert r["token_ids"] and len(r["text"]) == N and r["matches_golden"]


def test_help_imports_no_torch():
    code = ("import sys, contextlib, io\n"
            "from ternac.cli import build_parser\n"
            "p = build_parser()\n"
            "with contextlib.redirect_stdout(io.StringIO()) as f:\n"
            "    p.print_help()\n"
            "    for cmd in ('generate', 'sim', 'run'):\n"
            "        try:\n"
            "            p.parse_args([cmd, '--help'])\n"
            "        except SystemExit:\n"
            "            pass\n"
            "assert 'generate' in f.getvalue() and 'sim' in f.getvalue()\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'amaranth', 'cocotb'))\n"
            "print(heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"--help imported {r.stdout.strip()}"
