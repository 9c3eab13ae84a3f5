"""``medverify-vnnlib``: the VNN-LIB 2.0 standard solver command line (chapter 5) over
our backends.

    medverify-vnnlib --name | --version
    medverify-vnnlib verify QUERY --network NAME=ONNX [--timeout S]
                     [--serialise-assignments DIR] [--verifier V] [--options JSON]
    medverify-vnnlib supports --<capability>

``verify`` prints one result line (``sat``, ``unsat``, ``unknown`` or ``timed-out``);
after ``sat`` the satisfying assignment: per declared variable, in declaration order, a
header ``NAME TYPE [d1,d2]`` and its values row-major, one per line (inputs from our
replayed counterexample, outputs from onnxruntime at that input). Nothing else goes to
stdout; diagnostics go to stderr.

Queries: VNN-LIB 2.0 files are read with the PyPI ``vnnlib`` parser and type checker
(``vnnlib.compat`` turns them into an input box and output polytopes); VNN-COMP 1.0 files
(``X_i``/``Y_j`` constants, no ``vnnlib-version``) go through medverify.vnnlib. What we
decide: one network, one input and one output tensor, no hidden nodes, input
constraints that are bounds, and a violation that is a disjunction of single linear
constraints over the outputs (``Y_j >= Y_y`` per target, ``Y_0 <= c``, ...). Anything else
is refused as unsupported (exit 1), never answered.

Element types: our backends reason over the reals (float64 engine) and replay
counterexamples in float32 through onnxruntime; that analysis is sound for ``real``
only. A query declaring another type is refused (section 5.3.2: rewrite it in ``real``
to consent to analysis that may be unsound under floating point), unless
``--assume-real`` gives that consent on the command line.

Exit codes: 0 the answer was printed; 1 usage error, unreadable or unsupported query,
or one of section 5.3.2's error conditions; 2 the backend failed (its one-line reason on
stderr).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .errors import MedverifyError

PROGRAM = "medverify-vnnlib"
NAME = "medverify VNN-LIB solver"
EXIT_OK, EXIT_USAGE, EXIT_SOLVER = 0, 1, 2
RESULT_OF_STATUS = {
    "robust": "unsat",
    "counterexample": "sat",
    "unknown": "unknown",
    "timeout": "timed-out",
}
DEFAULT_TIMEOUT_S = 300.0

#: section 5.4 capabilities and our answers (what onnx_io.load_affine and the readers
#: below handle; tests/test_vnnlib_cli.py verifies a known-answer network per operator)
OPERATORS = ("Add", "Conv", "Flatten", "Gemm", "Identity", "MatMul", "Relu", "Reshape", "Sub")
CAPABILITIES = {
    "--onnx-opset-versions": ["13", "21"],
    "--onnx-element-types": ["float32"],
    "--onnx-operators": [f"{op} float32" for op in OPERATORS],
    "--vnnlib-versions": ["1.0", "2.0"],
    "--hidden-node-theories": ["NH"],
    "--multiple-input-output-theories": ["SIO"],
    "--multiple-network-theories": ["SNET"],
    "--multiple-node-comparison-theories": ["SNC", "MNC"],
    "--arithmetic-complexity-theories": ["BND", "OUTC"],
    "--optimised-disjunctive-reasoning": ["false"],
    "--serialise-assignments": ["true"],
}
_DTYPES = {"Real": "real", "F16": "float16", "F32": "float32", "F64": "float64"}


class UsageError(MedverifyError):
    """A bad command line, query or mapping: exit 1."""


@dataclass
class Variable:
    name: str
    element_type: str
    shape: tuple[int, ...]


@dataclass
class Query:
    """A query we can decide: input box, violation disjuncts (one row each), and the
    declared variables (input then output) for the assignment."""

    lower: np.ndarray
    upper: np.ndarray
    rows: np.ndarray  # (K, num_outputs): violation iff some k has rows[k] @ y <= rhs[k]
    rhs: np.ndarray
    network: str | None  # None: a VNN-COMP 1.0 file (no declared network name)
    inputs: Variable
    outputs: Variable
    version: str


def _is_v2(text: str) -> bool:
    return "vnnlib-version" in text or "declare-network" in text


def read_query(path: Path, assume_real: bool = False) -> Query:
    if not path.is_file():
        raise UsageError(f"query file does not exist: {path}")
    text = path.read_text()
    if _is_v2(text):
        return _read_v2(path, assume_real)
    from . import vnnlib

    try:
        prop = vnnlib.parse(text, str(path))
    except vnnlib.VnnlibError as exc:
        raise UsageError(str(exc)) from None
    rows, rhs = _single_rows(prop.disjuncts, path)
    n, m = prop.num_inputs, prop.num_outputs
    return Query(
        prop.lower,
        prop.upper,
        rows,
        rhs,
        None,
        Variable("X", "real", (n,)),
        Variable("Y", "real", (m,)),
        "1.0",
    )


def _single_rows(disjuncts, path) -> tuple[np.ndarray, np.ndarray]:
    rows, rhs = [], []
    for k, (c, d) in enumerate(disjuncts):
        c, d = np.atleast_2d(np.asarray(c, float)), np.atleast_1d(np.asarray(d, float))
        if c.shape[0] != 1:
            raise UsageError(
                f"{path}: unsupported: disjunct {k} is a conjunction of {c.shape[0]} output "
                "constraints (we decide disjunctions of single linear output constraints)"
            )
        rows.append(c[0])
        rhs.append(d[0])
    if not rows:
        raise UsageError(f"{path}: unsupported: no output constraint")
    return np.array(rows), np.array(rhs)


def _read_v2(path: Path, assume_real: bool) -> Query:
    import vnnlib as vl
    import vnnlib.compat

    try:
        parsed = vl.parse_query_file(str(path))
    except vl.VNNLibException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "parse error"
        raise UsageError(f"{path} is not a valid query: {first}") from None
    if parsed is None:
        raise UsageError(f"{path}: the vnnlib parser could not read the file")
    nets = parsed.networks
    if len(nets) != 1:
        raise UsageError(f"{path}: unsupported: {len(nets)} networks (we handle one: SNET)")
    net = nets[0]
    if net.hidden:
        raise UsageError(f"{path}: unsupported: hidden-node declarations (we handle NH)")
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        raise UsageError(
            f"{path}: unsupported: {len(net.inputs)} inputs and {len(net.outputs)} outputs "
            "(we handle one of each: SIO)"
        )
    variables = []
    for d in (net.inputs[0], net.outputs[0]):
        etype = _DTYPES.get(d.dtype.name)
        if etype is None:
            raise UsageError(f"{path}: unsupported element type of {d.name} ({d.dtype.name})")
        variables.append(Variable(d.name, etype, tuple(int(s) for s in d.shape)))
    types = {v.element_type for v in variables}
    if types != {"real"} and not assume_real:
        bad = next(v for v in variables if v.element_type != "real")
        raise UsageError(
            f"{path} declares {bad.name} as {bad.element_type}: this solver analyses over the "
            "reals only (sound for real); rewrite the query in real to consent to analysis "
            "that may be unsound under floating point, or pass --assume-real"
        )
    try:
        cases = vnnlib.compat.transform(parsed)
    except vl.VNNLibException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot convert"
        raise UsageError(f"{path}: unsupported: {first}") from None
    if len(cases) != 1:
        raise UsageError(
            f"{path}: unsupported: {len(cases)} input regions (we handle one input box)"
        )
    case = cases[0]
    box = np.array(case.input_box, dtype=float)
    disjuncts = [
        (np.array(p.coeff_matrix, float), np.array(p.rhs, float)) for p in case.output_constraints
    ]
    rows, rhs = _single_rows(disjuncts, path)
    return Query(box[:, 0], box[:, 1], rows, rhs, net.name, variables[0], variables[1], "2.0")


class MappedOrt:
    """onnxruntime on the classifier, its outputs y mapped to ``[0, rhs - rows @ y]`` so a
    query's violation is "some j >= 0 beats label 0" and replays like ours."""

    def __init__(self, ort, rows, rhs):
        self.ort, self.rows, self.rhs = ort, rows, rhs

    def logits(self, images):
        y = self.ort.logits(images).astype(np.float64)
        z = self.rhs[None, :] - y @ self.rows.T
        return np.hstack([np.zeros((len(y), 1)), z])


def decide(query: Query, onnx_path: Path, verifier: str, timeout_s: float, options: dict):
    """(verdict fields, x, y) for the query on the network (x, y None unless sat)."""
    from . import onnx_io, perturbations
    from .verifiers import Problem
    from .verify import run_verifier

    classifier = onnx_io.load_affine(onnx_path)
    ort = onnx_io.OrtClassifier(onnx_path)
    n_in = int(np.prod(ort.input_shape))
    n_out = classifier.output_dim
    if n_in != query.lower.size or query.rows.shape[1] != n_out:
        raise UsageError(
            f"{onnx_path} has {n_in} input and {n_out} output values, the query declares "
            f"{query.lower.size} and {query.rows.shape[1]}"
        )
    # outputs [0, rhs_k - rows_k y]: the margin of label 0 over target k is
    # rows_k y - rhs_k, positive for every k iff no disjunct of the violation holds
    k = len(query.rhs)
    c = np.vstack([np.zeros((1, n_out)), -query.rows])
    d = np.concatenate([[0.0], query.rhs])
    net = classifier.with_output_map(c, d)
    fam = perturbations.Box(query.lower, query.upper)
    problem = Problem(
        net, query.lower, query.upper, 0, tuple(range(1, k + 1)), fam, name=str(onnx_path)
    )
    fields = run_verifier(
        problem, verifier, timeout_s, MappedOrt(ort, query.rows, query.rhs), options
    )
    if fields["status"] != "counterexample":
        return fields, None, None
    x = np.asarray(fields["counterexample"]["image"], dtype=np.float64)
    y = ort.logits(x.astype(np.float32))[0].astype(np.float64)
    return fields, x, y


def _fmt(v: float) -> str:
    return repr(float(v))


def assignment_block(query: Query, x: np.ndarray, y: np.ndarray) -> str:
    if query.version == "1.0":
        pairs = [f"(X_{i} {_fmt(v)})" for i, v in enumerate(x)]
        pairs += [f"(Y_{j} {_fmt(v)})" for j, v in enumerate(y)]
        return "(" + "\n ".join(pairs) + ")\n"
    lines = []
    for var, values in ((query.inputs, x), (query.outputs, y)):
        lines.append(f"{var.name} {var.element_type} [{','.join(str(s) for s in var.shape)}]")
        lines += [_fmt(v) for v in np.reshape(values, -1)]
    return "".join(f"{line}\n" for line in lines)


def _networks(tokens) -> dict[str, Path]:
    out = {}
    for token in tokens:
        name, sep, path = token.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--network takes <name>=<filepath>; {token!r} is not one")
        if name in out:
            raise UsageError(f"--network maps {name!r} more than once")
        out[name] = Path(path)
    return out


def _check_mapping(query: Query, networks: dict[str, Path], path: Path) -> Path:
    """Section 5.3.2's first condition: a model file for each declared network, and none
    for a network the query does not declare."""
    if query.network is None:  # VNN-COMP 1.0: no declared name; exactly one model
        if len(networks) != 1:
            raise UsageError(f"{path} is a VNN-COMP 1.0 query: give exactly one --network N=<onnx>")
        return next(iter(networks.values()))
    extra = sorted(set(networks) - {query.network})
    if extra:
        raise UsageError(f"--network maps {extra[0]!r}, which {path} does not declare")
    if query.network not in networks:
        raise UsageError(
            f"no model file was supplied for network {query.network!r}, which {path} "
            f"declares; give --network {query.network}=<filepath>"
        )
    onnx_path = networks[query.network]
    if not onnx_path.is_file():
        raise UsageError(f"model file for network {query.network!r} does not exist: {onnx_path}")
    return onnx_path


def _check_element_types(query: Query, onnx_path: Path) -> None:
    """Section 5.3.2's second condition: the models' element types match the query's
    declared ones (a query written in real is exempt)."""
    if {query.inputs.element_type, query.outputs.element_type} == {"real"}:
        return
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = {1: "float32", 10: "float16", 11: "float64"}
    for var, vi in ((query.inputs, model.graph.input[0]), (query.outputs, model.graph.output[0])):
        got = names.get(vi.type.tensor_type.elem_type, str(vi.type.tensor_type.elem_type))
        if var.element_type != "real" and got != var.element_type:
            raise UsageError(
                f"{onnx_path} exposes {var.name} as {got}, the query declares {var.element_type}"
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    ident = parser.add_mutually_exclusive_group()
    ident.add_argument("--name", action="store_true", help="print the solver's name")
    ident.add_argument("--version", action="store_true", help="print the solver's version")
    sub = parser.add_subparsers(dest="command")
    v = sub.add_parser("verify", help="answer one VNN-LIB query", allow_abbrev=False)
    v.add_argument("query")
    v.add_argument("--network", action="append", default=[], metavar="<name>=<filepath>")
    v.add_argument("--timeout", type=int, metavar="<seconds>")
    v.add_argument("--serialise-assignments", "--assignments", dest="serialise", metavar="<dir>")
    v.add_argument("--verifier", default="crown", help="our backend (default crown)")
    v.add_argument("--options", default="{}", help="backend options as JSON")
    v.add_argument("--assume-real", action="store_true", help="consent to real-valued analysis")
    for name in ("supports", "capabilities"):
        s = sub.add_parser(
            name,
            help="report one capability" if name == "supports" else argparse.SUPPRESS,
            allow_abbrev=False,
        )
        g = s.add_mutually_exclusive_group()
        for cap in CAPABILITIES:
            g.add_argument(cap, dest="capability", action="store_const", const=cap)
        g.add_argument(
            "--multiple-inputs-output-theories",
            dest="capability",
            action="store_const",
            const="--multiple-input-output-theories",
            help=argparse.SUPPRESS,
        )
    return parser


def _usage_exit(parser):
    def error(message):
        parser.print_usage(sys.stderr)
        print(f"{PROGRAM}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    return error


def main(argv=None) -> int:
    parser = build_parser()
    for p in [parser, *parser._subparsers._group_actions[0].choices.values()]:
        p.error = _usage_exit(p)
    args = parser.parse_args(argv)
    try:
        if args.command and (args.name or args.version):
            raise UsageError(f"--name and --version cannot be combined with {args.command}")
        if args.name:
            sys.stdout.write(f"{NAME}\n")
            return EXIT_OK
        if args.version:
            sys.stdout.write(f"{__version__}\n")
            return EXIT_OK
        if args.command in ("supports", "capabilities"):
            if args.capability is None:
                raise UsageError(f"{args.command} needs exactly one of {', '.join(CAPABILITIES)}")
            sys.stdout.write("".join(f"{line}\n" for line in CAPABILITIES[args.capability]))
            return EXIT_OK
        if args.command == "verify":
            return _verify(args)
        raise UsageError("no global option or command given")
    except UsageError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (MedverifyError, ValueError, OSError) as exc:
        print(f"{PROGRAM}: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_SOLVER


def _verify(args) -> int:
    if args.timeout is not None and args.timeout < 0:
        raise UsageError(f"--timeout must be zero or more whole seconds, not {args.timeout}")
    from .errors import ConfigError
    from .verifiers import BACKENDS, parse_options

    try:
        options = parse_options(args.options)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None

    if args.verifier not in BACKENDS:
        raise UsageError(
            f"unknown --verifier {args.verifier!r}: choose one of {', '.join(BACKENDS)}"
        )
    networks = _networks(args.network)
    path = Path(args.query)
    query = read_query(path, args.assume_real)
    onnx_path = _check_mapping(query, networks, path)
    _check_element_types(query, onnx_path)
    timeout = float(args.timeout) if args.timeout is not None else DEFAULT_TIMEOUT_S
    if timeout <= 0:
        sys.stdout.write("timed-out\n")
        return EXIT_OK
    fields, x, y = decide(query, onnx_path, args.verifier, timeout, options)
    status = fields["status"]
    if status == "error":
        raise MedverifyError(f"{args.verifier} failed: {fields.get('message', '')}")
    text = RESULT_OF_STATUS[status] + "\n"
    if x is not None:
        block = assignment_block(query, x, y)
        if args.serialise:
            out = Path(args.serialise)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{path.stem}.assignment").write_text(block)
        else:
            text += block
    sys.stdout.write(text)
    sys.stdout.flush()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
