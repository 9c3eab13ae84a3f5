"""VNN-COMP style VNNLIB: write a robustness property and read one back.

A VNNLIB file states the *violation*: an input box over ``X_i`` and a condition on the
outputs ``Y_j`` that a counterexample satisfies. A solver's ``unsat`` is therefore
``robust`` and ``sat`` a counterexample. For label y and targets J we write::

    (assert (or
        (and (>= Y_j Y_y))      ; one line per j in J
    ))

or, with a single target, ``(assert (>= Y_j Y_y))``.

The reader understands the common VNN-COMP forms: ``declare-const`` of ``X_i``/``Y_j``
(type Real), top-level asserts of ``<=``/``>=`` (``<``/``>`` are read as their
closures) between variables and constants (negative constants as ``-0.5`` or
``(- 0.5)``), nested ``and``/``or`` over output constraints, input bounds at top level
(or repeated identically in every disjunct), and ``;`` comments. The result is a
:class:`VnnProperty`: the input box and the output condition in disjunctive normal form,
each disjunct a matrix inequality ``C y <= d``.

Numbers are written in the shortest positional decimal form that reads back as the same
float64, so a write/read round trip is lossless.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import VnnlibError
from .fileio import atomic_write

#: refuse properties whose disjunctive normal form has more disjuncts than this
MAX_DISJUNCTS = 100_000
_VAR = re.compile(r"^([XY])_(\d+)$")


@dataclass
class VnnProperty:
    """``lower <= x <= upper`` and the violation ``OR_k (C_k y <= d_k)``.

    ``disjuncts`` is a list of (C, d) with C of shape (rows, num_outputs): the outputs y
    violate the property iff some disjunct has every row of ``C y <= d`` true. A disjunct
    with zero rows is always true."""

    lower: np.ndarray
    upper: np.ndarray
    disjuncts: list[tuple[np.ndarray, np.ndarray]]
    num_outputs: int
    source: str = field(default="", repr=False)

    @property
    def num_inputs(self) -> int:
        return len(self.lower)

    def violated_by(self, y: np.ndarray, tol: float = 0.0) -> bool:
        """Do outputs y satisfy the violation condition (some disjunct, every row)?"""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        return any(bool(np.all(c @ y <= d + tol)) for c, d in self.disjuncts)


# --- writing ---------------------------------------------------------------------------


def format_number(x: float) -> str:
    """Shortest positional decimal that reads back as the same float64 (no exponent)."""
    x = float(x) + 0.0  # no negative zero
    if not np.isfinite(x):
        raise VnnlibError(f"cannot write non-finite number {x!r} to VNNLIB")
    return np.format_float_positional(x, unique=True, trim="0")


def write(
    path: str | os.PathLike,
    lower,
    upper,
    label: int,
    num_outputs: int,
    targets=None,
    comment: str = "",
) -> None:
    """Write the violation of "label y keeps the highest logit over the box"."""
    lower = np.asarray(lower, dtype=np.float64).reshape(-1)
    upper = np.asarray(upper, dtype=np.float64).reshape(-1)
    if lower.shape != upper.shape or lower.size == 0:
        raise VnnlibError(f"box bounds have shapes {lower.shape} and {upper.shape}")
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise VnnlibError("box bounds must be finite")
    bad = np.flatnonzero(lower > upper)
    if len(bad):
        i = int(bad[0])
        raise VnnlibError(f"empty box: X_{i} lower {float(lower[i])!r} > upper {float(upper[i])!r}")
    num_outputs = int(num_outputs)
    label = int(label)
    if not 0 <= label < num_outputs:
        raise VnnlibError(f"label {label} outside 0..{num_outputs - 1}")
    if targets is None:
        targets = [j for j in range(num_outputs) if j != label]
    targets = [int(j) for j in targets]
    if not targets or label in targets or any(not 0 <= j < num_outputs for j in targets):
        raise VnnlibError(
            f"targets {targets} must be non-empty, exclude label {label} and lie in "
            f"0..{num_outputs - 1}"
        )
    lines = []
    for text in comment.splitlines():
        lines.append(f"; {text}")
    lines.append(f"; violation: some label in {targets} scores >= label {label}")
    lines += [f"(declare-const X_{i} Real)" for i in range(len(lower))]
    lines.append("")
    lines += [f"(declare-const Y_{j} Real)" for j in range(num_outputs)]
    lines.append("")
    lines.append("; input box")
    for i, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
        lines.append(f"(assert (<= X_{i} {format_number(hi)}))")
        lines.append(f"(assert (>= X_{i} {format_number(lo)}))")
    lines.append("")
    lines.append("; output: the violation")
    if len(targets) == 1:
        lines.append(f"(assert (>= Y_{targets[0]} Y_{label}))")
    else:
        lines.append("(assert (or")
        lines += [f"    (and (>= Y_{j} Y_{label}))" for j in targets]
        lines.append("))")
    atomic_write(path, "\n".join(lines) + "\n")


def write_problem(path: str | os.PathLike, problem, comment: str = "") -> None:
    """A verifiers.Problem as VNNLIB over its own inputs (the family parameters: one
    input for brightness and contrast, the pixels for linf)."""
    write(
        path,
        problem.lower,
        problem.upper,
        problem.label,
        problem.net.output_dim,
        problem.targets,
        comment=comment,
    )


# --- reading ---------------------------------------------------------------------------


@dataclass
class _Atom:
    text: str
    line: int


@dataclass
class _List:
    items: list
    line: int


def _tokenize(text: str, where):
    """Yield ('(' | ')' | atom, line)."""
    token_re = re.compile(r"\(|\)|;[^\n]*|\n|[ \t\r\f\v]+|[^\s();]+")
    line = 1
    pos = 0
    while pos < len(text):
        m = token_re.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches every character
            raise VnnlibError(f"{where(line)} cannot read {text[pos : pos + 20]!r}")
        tok = m.group(0)
        pos = m.end()
        if tok == "\n":
            line += 1
        elif tok.startswith(";") or tok.isspace():
            continue
        else:
            yield tok, line


def _parse(text: str, where) -> list[_List]:
    stack: list[_List] = []
    forms: list[_List] = []
    for tok, line in _tokenize(text, where):
        if tok == "(":
            stack.append(_List([], line))
        elif tok == ")":
            if not stack:
                raise VnnlibError(f"{where(line)} unexpected ')'")
            node = stack.pop()
            if stack:
                stack[-1].items.append(node)
            else:
                forms.append(node)
        else:
            if not stack:
                raise VnnlibError(f"{where(line)} {tok!r} outside parentheses")
            stack[-1].items.append(_Atom(tok, line))
    if stack:
        raise VnnlibError(f"{where(stack[-1].line)} '(' is never closed")
    return forms


@dataclass(frozen=True)
class _Lin:
    """sum coef[v] * v + const, v = ('X', i) or ('Y', j)."""

    coef: tuple  # sorted ((kind, index), value) pairs
    const: float


@dataclass
class _Reader:
    where: object
    inputs: dict = field(default_factory=dict)  # index -> line declared
    outputs: dict = field(default_factory=dict)

    def error(self, node, message):
        return VnnlibError(f"{self.where(node.line)} {message}")

    # declarations ------------------------------------------------------------------
    def declare(self, form: _List):
        items = form.items
        if len(items) != 3 or not all(isinstance(x, _Atom) for x in items[1:]):
            raise self.error(form, "declare-const needs a name and a type")
        name, typ = items[1].text, items[2].text
        m = _VAR.match(name)
        if m is None:
            raise self.error(form, f"variable {name!r} is not X_<i> or Y_<j>")
        if typ != "Real":
            raise self.error(form, f"variable {name} has type {typ!r}, expected Real")
        table = self.inputs if m.group(1) == "X" else self.outputs
        idx = int(m.group(2))
        if idx in table:
            raise self.error(form, f"variable {name} declared twice")
        table[idx] = form.line

    # terms ---------------------------------------------------------------------------
    def number(self, node) -> float | None:
        if isinstance(node, _Atom):
            try:
                value = float(node.text)
            except ValueError:
                return None
            if not np.isfinite(value):
                raise self.error(node, f"non-finite number {node.text!r}")
            return value
        if (
            isinstance(node, _List)
            and len(node.items) == 2
            and isinstance(node.items[0], _Atom)
            and node.items[0].text == "-"
        ):
            inner = self.number(node.items[1])
            return None if inner is None else -inner
        return None

    def term(self, node) -> _Lin:
        value = self.number(node)
        if value is not None:
            return _Lin((), value)
        if isinstance(node, _Atom):
            m = _VAR.match(node.text)
            if m is None:
                raise self.error(node, f"unknown term {node.text!r}")
            kind, idx = m.group(1), int(m.group(2))
            if idx not in (self.inputs if kind == "X" else self.outputs):
                raise self.error(node, f"variable {node.text} used before its declare-const")
            return _Lin((((kind, idx), 1.0),), 0.0)
        raise self.error(node, "unsupported term: only variables and constants may be compared")

    # constraints as DNF: list of disjuncts, each a list of (_Lin meaning expr <= 0, node)
    def dnf(self, node) -> list[list]:
        if not isinstance(node, _List) or not node.items or not isinstance(node.items[0], _Atom):
            raise self.error(node, "expected a constraint such as (<= Y_0 Y_1)")
        op, args = node.items[0].text, node.items[1:]
        if op in ("<=", ">=", "<", ">"):
            if len(args) != 2:
                raise self.error(node, f"{op} needs exactly two operands, got {len(args)}")
            a, b = self.term(args[0]), self.term(args[1])
            lo, hi = (a, b) if op in ("<=", "<") else (b, a)
            coef: dict = dict(lo.coef)
            for var, c in hi.coef:
                coef[var] = coef.get(var, 0.0) - c
            coef = {v: c for v, c in coef.items() if c != 0.0}
            if not coef:
                raise self.error(node, "constraint between constants only")
            kinds = {v[0] for v in coef}
            if len(kinds) > 1:
                raise self.error(node, "constraint mixes inputs X and outputs Y")
            return [[(_Lin(tuple(sorted(coef.items())), lo.const - hi.const), node)]]
        if op == "and":
            if not args:
                raise self.error(node, "empty (and)")
            out = [[]]
            for arg in args:
                parts = self.dnf(arg)
                out = [x + y for x, y in itertools.product(out, parts)]
                if len(out) > MAX_DISJUNCTS:
                    raise self.error(node, f"more than {MAX_DISJUNCTS} disjuncts")
            return out
        if op == "or":
            if not args:
                raise self.error(node, "empty (or)")
            out = []
            for arg in args:
                out += self.dnf(arg)
            if len(out) > MAX_DISJUNCTS:
                raise self.error(node, f"more than {MAX_DISJUNCTS} disjuncts")
            return out
        raise self.error(node, f"unsupported operator {op!r}")


def read(path: str | os.PathLike) -> VnnProperty:
    """Parse a VNNLIB file (see the module docstring for the supported forms)."""
    name = os.fspath(path)
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise VnnlibError(f"{name}: cannot read: {exc.strerror}") from None
    return parse(text, name)


def parse(text: str, name: str = "<string>") -> VnnProperty:
    def where(line):
        return f"{name}:{line}:"

    reader = _Reader(where)
    forms = _parse(text, where)
    lower: dict[int, float] = {}
    upper: dict[int, float] = {}
    output_dnf: list[list] = [[]]
    for form in forms:
        head = form.items[0] if form.items else None
        if not isinstance(head, _Atom):
            raise reader.error(form, "expected (declare-const ...) or (assert ...)")
        if head.text == "declare-const":
            reader.declare(form)
            continue
        if head.text != "assert":
            raise reader.error(form, f"unsupported command {head.text!r}")
        if len(form.items) != 2:
            raise reader.error(form, "assert takes exactly one expression")
        dnf = reader.dnf(form.items[1])
        # input constraints: must be the same in every disjunct; they are then factored out
        inputs_per = [[c for c in conj if c[0].coef[0][0][0] == "X"] for conj in dnf]
        keys = [sorted((c[0].coef, c[0].const) for c in ins) for ins in inputs_per]
        if any(k != keys[0] for k in keys[1:]):
            node = next(c[1] for ins in inputs_per for c in ins)
            raise reader.error(node, "input constraints that differ between disjuncts")
        for lin, node in inputs_per[0]:
            if len(lin.coef) != 1:
                raise reader.error(node, "input constraints must bound one variable")
            (_, idx), c = lin.coef[0]
            bound = -lin.const / c  # c x + const <= 0
            if c > 0:
                upper[idx] = min(upper.get(idx, np.inf), bound)
            else:
                lower[idx] = max(lower.get(idx, -np.inf), bound)
        outs = [[c for c in conj if c[0].coef[0][0][0] == "Y"] for conj in dnf]
        output_dnf = [x + y for x, y in itertools.product(output_dnf, outs)]
        if len(output_dnf) > MAX_DISJUNCTS:
            raise reader.error(form, f"more than {MAX_DISJUNCTS} disjuncts")
    n_in, n_out = len(reader.inputs), len(reader.outputs)
    last = forms[-1].line if forms else 1
    if n_in == 0 or n_out == 0:
        raise VnnlibError(f"{where(last)} no X_<i> or no Y_<j> declared")
    for kind, table in (("X", reader.inputs), ("Y", reader.outputs)):
        if sorted(table) != list(range(len(table))):
            missing = min(set(range(len(table))) - set(table))
            raise VnnlibError(f"{where(last)} {kind}_{missing} is never declared")
    lo = np.full(n_in, -np.inf)
    hi = np.full(n_in, np.inf)
    for idx, v in lower.items():
        lo[idx] = v
    for idx, v in upper.items():
        hi[idx] = v
    for i in range(n_in):
        line = reader.inputs[i]
        if not np.isfinite(lo[i]) or not np.isfinite(hi[i]):
            side = "lower" if not np.isfinite(lo[i]) else "upper"
            raise VnnlibError(f"{where(line)} X_{i} has no {side} bound")
        if lo[i] > hi[i]:
            raise VnnlibError(
                f"{where(line)} X_{i} has an empty range [{float(lo[i])!r}, {float(hi[i])!r}]"
            )
    disjuncts = []
    for conj in output_dnf:
        c = np.zeros((len(conj), n_out))
        d = np.zeros(len(conj))
        for row, (lin, _) in enumerate(conj):
            for (_, j), value in lin.coef:
                c[row, j] = value
            d[row] = -lin.const
        disjuncts.append((c, d))
    return VnnProperty(lo, hi, disjuncts, n_out, source=name)


def to_problem_spec(prop: VnnProperty) -> tuple[np.ndarray, np.ndarray, int, tuple[int, ...]]:
    """(lower, upper, label, targets) for a property of the form "some target j has
    Y_j >= Y_label" (one row ``a Y_label - a Y_j <= 0`` per disjunct, a > 0), as written
    by :func:`write`; raises VnnlibError for any other property."""
    where = prop.source or "<property>"
    label = None
    targets: list[int] = []
    for k, (c, d) in enumerate(prop.disjuncts):
        nz = np.flatnonzero(c[0]) if len(c) == 1 else []
        if len(c) != 1 or d[0] != 0.0 or len(nz) != 2 or c[0, nz[0]] != -c[0, nz[1]]:
            raise VnnlibError(
                f"{where}: disjunct {k} is not a single 'Y_j >= Y_label' constraint, so the "
                "property is not a plain robustness property"
            )
        pos, neg = (nz[0], nz[1]) if c[0, nz[0]] > 0 else (nz[1], nz[0])
        if label is None:
            label = int(pos)
        elif label != pos:
            raise VnnlibError(
                f"{where}: disjunct {k} compares against Y_{pos}, earlier ones against Y_{label}"
            )
        if int(neg) in targets:
            raise VnnlibError(f"{where}: target Y_{neg} appears twice")
        targets.append(int(neg))
    if label is None:
        raise VnnlibError(f"{where}: no output constraint")
    return prop.lower.copy(), prop.upper.copy(), label, tuple(targets)
