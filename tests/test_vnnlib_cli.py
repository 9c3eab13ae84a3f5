"""medverify-vnnlib (the VNN-LIB 2.0 solver command line) against vnnlibTestSolver, the
reference implementation of chapter 5, configured to give the right answers: same
queries, outputs parsed the same way (result line, assignment format, supports
answers, exit codes), and our verdicts right on a network with a known answer that uses
every operator `supports --onnx-operators` claims."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medverify import vnnlib_cli

pytest.importorskip("vnnlib")
pytest.importorskip("vnnlib_test_solver")

SRC = str(Path(vnnlib_cli.__file__).resolve().parents[1])
CENTRE = 0.1
#: y0 = relu(2 * sum(x)), y1 = 1 over x in [c - e, c + e]^4: the violation y0 >= y1 holds
#: somewhere iff 8 (c + e) >= 1, i.e. e >= 0.025 at c = 0.1
ROBUST_EPS, CEX_EPS = 0.01, 0.05


def all_ops_onnx(path: Path, opset: int = 13) -> None:
    """x (1,1,2,2) -> Conv(1x1, w=2) -> Flatten -> MatMul -> Add -> Relu -> Gemm ->
    Reshape -> Identity -> Sub = [relu(2 sum x), 1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def t(name, arr):
        return numpy_helper.from_array(np.asarray(arr, np.float32), name)

    mm = np.zeros((4, 2))
    mm[:, 0] = 1.0
    inits = [
        t("cw", np.full((1, 1, 1, 1), 2.0)),
        t("cb", [0.0]),
        t("mm", mm),
        t("ab", [0.0, 1.0]),
        t("gw", np.eye(2)),
        t("gb", [0.0, 0.0]),
        numpy_helper.from_array(np.array([1, 2], np.int64), "shape"),
        t("sc", [0.0, 0.0]),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Flatten", ["c"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "mm"], ["m"]),
        helper.make_node("Add", ["m", "ab"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Gemm", ["r", "gw", "gb"], ["g"], transB=1),
        helper.make_node("Reshape", ["g", "shape"], ["s"]),
        helper.make_node("Identity", ["s"], ["i"]),
        helper.make_node("Sub", ["i", "sc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "all_ops",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    ops = {n.op_type for n in model.graph.node}
    assert ops == set(vnnlib_cli.OPERATORS)


def query_v2(path: Path, eps: float, etype: str = "real") -> None:
    lines = ["(vnnlib-version <2.0>)", "(declare-network N"]
    lines += [f"  (declare-input X {etype} [1,1,2,2])", f"  (declare-output Y {etype} [1,2])", ")"]
    for i in range(2):
        for j in range(2):
            lines.append(f"(assert (>= X[0,0,{i},{j}] {CENTRE - eps:.6f}))")
            lines.append(f"(assert (<= X[0,0,{i},{j}] {CENTRE + eps:.6f}))")
    lines.append("(assert (>= Y[0,0] Y[0,1]))")
    path.write_text("\n".join(lines) + "\n")


def query_v1(path: Path, eps: float) -> None:
    lines = [f"(declare-const X_{i} Real)" for i in range(4)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(2)]
    for i in range(4):
        lines.append(f"(assert (>= X_{i} {CENTRE - eps:.6f}))")
        lines.append(f"(assert (<= X_{i} {CENTRE + eps:.6f}))")
    lines.append("(assert (>= Y_0 Y_1))")
    path.write_text("\n".join(lines) + "\n")


def ours(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run(
        [sys.executable, "-m", "medverify.vnnlib_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def reference(config: Path, *args):
    exe = shutil.which("vnnlibTestSolver") or str(Path(sys.executable).parent / "vnnlibTestSolver")
    return subprocess.run(
        [exe, "--config", str(config), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def parse_output(stdout: str):
    """(result, {name: (type, shape, values)}) per section 5.3.1."""
    lines = stdout.splitlines()
    result, rest = lines[0], lines[1:]
    assignment = {}
    i = 0
    while i < len(rest):
        name, etype, dims = rest[i].split(" ")
        shape = tuple(int(d) for d in dims.strip("[]").split(","))
        size = int(np.prod(shape))
        values = [float(v) for v in rest[i + 1 : i + 1 + size]]
        assert len(values) == size
        assignment[name] = (etype, shape, values)
        i += 1 + size
    return result, assignment


def write_reference_config(path: Path, cex=None) -> None:
    """vnnlibTestSolver answering as we should: robust*.vnnlib unsat, cex*.vnnlib sat with
    the given assignment; our capabilities."""
    caps = []
    for flag, values in vnnlib_cli.CAPABILITIES.items():
        key = flag[2:]
        if key == "onnx-operators":
            ops = ", ".join(
                f'{{name = "{v.split()[0]}", element-types = ["{v.split()[1]}"]}}' for v in values
            )
            caps.append(f"{key} = [{ops}]")
        elif values in (["true"], ["false"]):
            caps.append(f"{key} = {values[0]}")
        else:
            caps.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in values)}]")
    rules = ['[[rules]]\nmatch = "robust*.vnnlib"\nresult = "unsat"\n']
    if cex is not None:
        x, y = cex
        rules.append(
            '[[rules]]\nmatch = "cex*.vnnlib"\nresult = "sat"\n'
            f"[rules.assignments]\nX = {list(map(float, x))}\nY = {list(map(float, y))}\n"
        )
    path.write_text(
        '[solver]\nname = "reference"\nversion = "0"\n\n[capabilities]\n'
        + "\n".join(caps)
        + "\n\n"
        + "\n".join(rules)
    )


@pytest.fixture
def setup(tmp_path):
    onnx_path = tmp_path / "net.onnx"
    all_ops_onnx(onnx_path)
    query_v2(tmp_path / "robust.vnnlib", ROBUST_EPS)
    query_v2(tmp_path / "cex.vnnlib", CEX_EPS)
    return tmp_path, onnx_path


def test_verdicts_on_known_answers_match_the_reference(setup):
    tmp, onnx_path = setup
    got_robust = ours("verify", tmp / "robust.vnnlib", "--network", f"N={onnx_path}")
    assert got_robust.returncode == 0, got_robust.stderr
    assert got_robust.stdout == "unsat\n"
    got_cex = ours("verify", tmp / "cex.vnnlib", "--network", f"N={onnx_path}", "--timeout", "60")
    assert got_cex.returncode == 0, got_cex.stderr
    result, assignment = parse_output(got_cex.stdout)
    assert result == "sat"
    etype, shape, x = assignment["X"]
    assert (etype, shape) == ("real", (1, 1, 2, 2))
    x = np.array(x)
    assert np.all(x >= CENTRE - CEX_EPS - 1e-9) and np.all(x <= CENTRE + CEX_EPS + 1e-9)
    y = np.array(assignment["Y"][2])
    assert y[0] >= y[1] and abs(y[0] - max(0.0, 2 * x.sum())) < 1e-5 and y[1] == 1.0
    # the reference, configured with the right answers, parses to the same structure
    config = tmp / "ref.toml"
    write_reference_config(config, (x, y))
    ref_robust = reference(config, "verify", tmp / "robust.vnnlib", "--network", f"N={onnx_path}")
    ref_cex = reference(config, "verify", tmp / "cex.vnnlib", "--network", f"N={onnx_path}")
    assert (ref_robust.returncode, ref_robust.stdout) == (0, got_robust.stdout)
    assert ref_cex.returncode == 0, ref_cex.stderr
    ref_result, ref_assignment = parse_output(ref_cex.stdout)
    assert ref_result == result
    assert {k: v[:2] for k, v in ref_assignment.items()} == {
        k: v[:2] for k, v in assignment.items()
    }
    np.testing.assert_allclose(ref_assignment["X"][2], x)


def test_supports_answers_match_the_reference(tmp_path):
    config = tmp_path / "ref.toml"
    write_reference_config(config)
    for flag in vnnlib_cli.CAPABILITIES:
        got, ref = ours("supports", flag), reference(config, "supports", flag)
        assert (got.returncode, got.stdout) == (ref.returncode, ref.stdout) == (0, ref.stdout), flag


def test_name_version_and_usage_errors_exit_like_the_reference(tmp_path):
    config = tmp_path / "ref.toml"
    write_reference_config(config)
    for args in (["--name"], ["--version"]):
        got, ref = ours(*args), reference(config, *args)
        assert got.returncode == ref.returncode == 0
        assert len(got.stdout.splitlines()) == len(ref.stdout.splitlines()) == 1
    for args in ([], ["supports"], ["supports", "--nonsense"], ["--name", "supports"]):
        got, ref = ours(*args), reference(config, *args)
        assert got.returncode == ref.returncode == 1, args
        assert got.stdout == ref.stdout == ""
        assert got.stderr.strip()


def test_network_mapping_errors_exit_like_the_reference(setup):
    tmp, onnx_path = setup
    config = tmp / "ref.toml"
    write_reference_config(config)
    query = tmp / "robust.vnnlib"
    for mapping in ([], ["--network", f"M={onnx_path}"], ["--network", "N"]):
        got = ours("verify", query, *mapping)
        ref = reference(
            config, "verify", query, *mapping, *([] if mapping else ["--network", f"Q={onnx_path}"])
        )
        assert got.returncode == ref.returncode == 1, (mapping, got.stderr, ref.stderr)
        assert got.stdout == "" and len(got.stderr.strip().splitlines()) == 1


def test_float32_query_needs_consent(tmp_path):
    onnx_path = tmp_path / "net.onnx"
    all_ops_onnx(onnx_path)
    query_v2(tmp_path / "q.vnnlib", ROBUST_EPS, etype="float32")
    refused = ours("verify", tmp_path / "q.vnnlib", "--network", f"N={onnx_path}")
    assert refused.returncode == 1 and refused.stdout == "" and "real" in refused.stderr
    allowed = ours("verify", tmp_path / "q.vnnlib", "--network", f"N={onnx_path}", "--assume-real")
    assert (allowed.returncode, allowed.stdout) == (0, "unsat\n"), allowed.stderr


def test_vnncomp_1_query_and_unsupported_forms(tmp_path):
    onnx_path = tmp_path / "net.onnx"
    all_ops_onnx(onnx_path, opset=21)
    query_v1(tmp_path / "robust.vnnlib", ROBUST_EPS)
    got = ours("verify", tmp_path / "robust.vnnlib", "--network", f"net={onnx_path}")
    assert (got.returncode, got.stdout) == (0, "unsat\n"), got.stderr
    # a conjunction inside the violation is not something we decide: refused, not answered
    text = (
        (tmp_path / "robust.vnnlib")
        .read_text()
        .replace(
            "(assert (>= Y_0 Y_1))", "(assert (or (and (>= Y_0 Y_1) (<= Y_0 3.0)) (<= Y_1 0.0)))"
        )
    )
    (tmp_path / "conj.vnnlib").write_text(text)
    got = ours("verify", tmp_path / "conj.vnnlib", "--network", f"net={onnx_path}")
    assert got.returncode == 1 and got.stdout == "" and "unsupported" in got.stderr


def test_output_bound_query_is_decided(tmp_path):
    """BND on an output (Y_0 >= c): robust iff c > max relu(2 sum x)."""
    onnx_path = tmp_path / "net.onnx"
    all_ops_onnx(onnx_path)
    query_v1(tmp_path / "q.vnnlib", ROBUST_EPS)  # max y0 = 8 * 0.11 = 0.88
    base = (tmp_path / "q.vnnlib").read_text()
    for c, want in ((0.9, "unsat"), (0.8, "sat")):
        (tmp_path / "b.vnnlib").write_text(
            base.replace("(assert (>= Y_0 Y_1))", f"(assert (>= Y_0 {c}))")
        )
        got = ours(
            "verify", tmp_path / "b.vnnlib", "--network", f"net={onnx_path}", "--timeout", "60"
        )
        assert got.returncode == 0, got.stderr
        assert got.stdout.splitlines()[0] == want


def test_serialised_assignment_and_unknown_verifier(setup):
    tmp, onnx_path = setup
    out = tmp / "assignments"
    got = ours(
        "verify", tmp / "cex.vnnlib", "--network", f"N={onnx_path}", "--serialise-assignments", out
    )
    assert (got.returncode, got.stdout) == (0, "sat\n"), got.stderr
    result, assignment = parse_output("sat\n" + (out / "cex.assignment").read_text())
    assert list(assignment) == ["X", "Y"] and assignment["Y"][1] == (1, 2)
    bad = ours("verify", tmp / "cex.vnnlib", "--network", f"N={onnx_path}", "--verifier", "nope")
    assert bad.returncode == 1 and bad.stdout == "" and "nope" in bad.stderr
