"""vmdriver's CPython bridge.

vmdriver writes this module into its run's private directory and starts
`python3 -c ... DIR FD`: the test script then runs in this interpreter with
the NixOS driver's globals, and every call of the test-script API goes to
vmdriver's engine (Go) over the socket on file descriptor FD.

The API is not written here: the engine sends its table (package api:
names, parameters, defaults, doc lines) in its first message, and this
module makes real Python functions from it, so signatures, help() and
argument errors are Python's own. Only what belongs to the language more
than to the run (subtest, polling_condition, test_script, the Machine
class, the exceptions, `t`) is written here.

Wire: one JSON object a line, both ways. The interpreter asks ("call",
"attr", ...) and waits for "ret"; while it waits the engine may call back
a function of the script ("cb"), which is answered with "ret" before the
wait goes on, so calls and callbacks nest like a call stack on both sides.
"""

import ast
import builtins
import datetime
import difflib
import inspect
import json
import linecache
import math
import os
import socket
import sys
import sysconfig
import threading
import traceback
import unittest

_UNSET = object()  # a parameter the caller did not pass


class VMDriverError(Exception):
    """An error of vmdriver's engine (a machine, the hypervisor, the run)."""


MachineError = VMDriverError


class RequestedAssertionFailed(AssertionError):
    """A check the test asked for failed: succeed, fail, t.assert*, ..."""


class Timeout(RequestedAssertionFailed, TimeoutError):
    """A wait ran out of time."""


class PollingConditionError(VMDriverError):
    """A polling condition stopped holding."""


class NotSupported(VMDriverError, NotImplementedError):
    """vmdriver does not offer this NixOS driver method yet."""


class TestStopped(BaseException):
    """The run was stopped (global timeout, interrupt): not catchable by
    `except Exception`."""


_KINDS = {
    "assertion": RequestedAssertionFailed,
    "timeout": Timeout,
    "condition": PollingConditionError,
    "type": TypeError,
    "value": ValueError,
    "unsupported": NotSupported,
    "stopped": TestStopped,
    "error": VMDriverError,
}

_STDLIB = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")}
    if p
)


class _Conn:
    """The connection to the engine."""

    def __init__(self, fd):
        os.set_inheritable(fd, False)  # commands the script runs must not hold it
        self.sock = socket.socket(fileno=fd)
        self.rfile = self.sock.makefile("rb", buffering=1 << 16)
        self.lock = threading.RLock()  # one request (and its callbacks) at a time
        self.fns = {}  # callback id -> function of the script
        self.next_id = 0
        self.raised = {}  # id -> exception a callback raised, re-raised as itself

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def send(self, msg):
        data = json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
        self.sock.sendall(data.encode("utf-8", "surrogateescape") + b"\n")

    def recv(self):
        line = self.rfile.readline()
        if not line:
            raise TestStopped("the vmdriver engine closed the connection")
        return json.loads(line, object_hook=_decode_tag)

    def request(self, msg):
        """Sends a request and serves callbacks until its answer."""
        with self.lock:
            self.send(msg)
            while True:
                m = self.recv()
                op = m.get("op")
                if op == "ret":
                    if "err" in m:
                        raise self.exception(m["err"])
                    return m.get("v")
                if op == "cb":
                    self.callback(m)
                    continue
                raise VMDriverError("bridge protocol: unexpected message %r" % (op,))

    def callback(self, m):
        fn = self.fns.get(m.get("fn"))
        try:
            if fn is None:
                raise VMDriverError("bridge protocol: no function %r" % (m.get("fn"),))
            v = fn(*m.get("args", ()))
            if m.get("mode") == "cond":
                out = {"ok": v is None or bool(v), "repr": repr(v)}
            else:
                out = bool(v)
        except TestStopped:
            raise
        except BaseException as e:  # noqa: B036 - every failure goes back to the engine
            self.send({"op": "ret", "err": describe(e, keep=True)})
            return
        self.send({"op": "ret", "v": out})

    def exception(self, err):
        pid = err.get("py")
        if pid is not None and pid in self.raised:
            return self.raised.pop(pid)
        e = _KINDS.get(err.get("kind"), VMDriverError)(err.get("msg", ""))
        e._vmdriver_error = err.get("go")
        return e

    def register(self, fn):
        fid = self.new_id()
        self.fns[fid] = fn
        return fid


_conn = None  # set by main
_machines = {}  # handle -> Machine
_snapshots = {}  # handle -> Snapshot


def _decode_tag(d):
    tag = d.get("$")
    if tag is None:
        return d
    v = d.get("v")
    if tag == "tuple":
        return tuple(v)
    if tag == "dict":
        return {k: x for k, x in v}
    if tag == "m":
        m = _machines.get(v)
        if m is None:
            m = Machine.__new__(Machine)
            m._h, m._name = v, d["name"]
            _machines[v] = m
        return m
    if tag == "snap":
        s = _snapshots.get(v)
        if s is None:
            s = Snapshot(v, d)
            _snapshots[v] = s
        return s
    if tag == "block":
        return _Block(v, d.get("msg", ""))
    return d


def _enc(v):
    """Encodes an argument; the engine checks its type against the table."""
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"$": "obj", "type": "float", "repr": repr(v)}
    if isinstance(v, datetime.timedelta):
        return {"$": "td", "v": v.total_seconds()}
    if isinstance(v, Machine):
        return {"$": "m", "v": v._h}
    if isinstance(v, Snapshot):
        return {"$": "snap", "v": v._h}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    return {"$": "obj", "type": type(v).__name__, "repr": _safe_repr(v)}


def _safe_repr(v):
    try:
        return repr(v)[:200]
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        return "<%s>" % type(v).__name__


def _call(target, kind, name, params, args):
    """Calls a method or global of the table with the arguments passed."""
    a = {}
    fns = []
    try:
        for p in params:
            v = args[p["name"]]
            if v is _UNSET:
                continue
            t = p["type"]
            if p["variadic"]:
                if not v:
                    continue
                v = [str(x) if t == "text" else x for x in v]
            elif t == "bool":
                v = bool(v)
            elif t == "text":
                v = str(v)
            elif t == "any":
                v = None
            elif t == "function" and callable(v):
                fid = _conn.register(v)
                fns.append(fid)
                a[p["name"]] = {"$": "fn", "v": fid}
                continue
            a[p["name"]] = _enc(v)
        msg = {"op": "call", "k": kind, "fn": name, "a": a}
        if target is not None:
            msg["m"] = target._h
        return _conn.request(msg)
    finally:
        for fid in fns:
            _conn.fns.pop(fid, None)


def _signature(params, method):
    ps = []
    if method:
        ps.append(inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD))
    star = False
    for p in params:
        if p["variadic"]:
            ps.append(inspect.Parameter(p["name"], inspect.Parameter.VAR_POSITIONAL))
            star = True
            continue
        kind = inspect.Parameter.KEYWORD_ONLY if p["kwonly"] or star else inspect.Parameter.POSITIONAL_OR_KEYWORD
        default = inspect.Parameter.empty if p["required"] else p["default"]
        ps.append(inspect.Parameter(p["name"], kind, default=default))
    return inspect.Signature(ps)


def _make_function(spec, kind, method):
    """A real Python function for a table entry: its signature gives
    Python's own argument errors; the engine fills in the defaults."""
    params = spec["params"]
    parts = ["self"] if method else []
    star = False
    for p in params:
        if p["variadic"]:
            parts.append("*" + p["name"])
            star = True
            continue
        if p["kwonly"] and not star:
            parts.append("*")
            star = True
        parts.append(p["name"] if p["required"] else p["name"] + "=_UNSET")
    names = ", ".join("%r: %s" % (p["name"], p["name"]) for p in params)
    target = "self" if method else "None"
    src = "def {n}({sig}):\n    return _call({t}, {k!r}, {n!r}, _params, {{{a}}})\n".format(
        n=spec["name"], sig=", ".join(parts), t=target, k=kind, a=names
    )
    ns = {"_UNSET": _UNSET, "_call": _call, "_params": params}
    exec(compile(src, "<vmdriver api>", "exec"), ns)  # noqa: S102 - the engine's own table
    fn = ns[spec["name"]]
    fn.__signature__ = _signature(params, method)
    doc = spec.get("doc", "")
    if spec.get("returns"):
        doc += "\n\nReturns: " + spec["returns"]
    if spec.get("unsupported"):
        doc += "\n\nNot supported by vmdriver yet: needs " + spec["unsupported"] + "."
    fn.__doc__ = doc
    fn.__qualname__ = ("Machine." if method else "") + spec["name"]
    fn.__module__ = "vmdriver"
    return fn


class Machine:
    """A machine of the test run; vmdriver's engine does the work.

    Machine(m) is another view of the machine m (subclasses add methods);
    Machine(start_command, name=..., keep_machine_state=...) creates one,
    like create_machine.
    """

    def __init__(self, machine=None, /, *, start_command=None, name=None, keep_machine_state=False):
        if isinstance(machine, Machine):
            self._h, self._name = machine._h, machine._name
            return
        if isinstance(machine, str) and start_command is None:
            machine, start_command = None, machine
        if machine is not None or start_command is None:
            raise TypeError(
                "Machine() takes a machine to act on, or a start command to create one, not %s"
                % type(machine).__name__
            )
        m = create_machine(start_command, name=name, keep_machine_state=keep_machine_state)
        self._h, self._name = m._h, m._name

    def __repr__(self):
        return "<%s '%s'>" % (type(self).__name__, self._name)

    def __eq__(self, other):
        if isinstance(other, Machine):
            return self._h == other._h
        return NotImplemented

    def __hash__(self):
        return hash(("vmdriver.Machine", self._h))


BaseMachine = QemuMachine = Machine


class _MachineAlias:
    """The implicit `machine` of a one-machine test: warns once, then acts
    as the machine."""

    def __init__(self, m):
        object.__setattr__(self, "_m", m)
        object.__setattr__(self, "_warned", False)

    def _warn(self):
        if not self._warned:
            object.__setattr__(self, "_warned", True)
            _conn.request({"op": "alias"})

    def __getattr__(self, name):
        self._warn()
        return getattr(self._m, name)

    def __repr__(self):
        return repr(self._m)

    def __eq__(self, other):
        return self._m == (other._m if isinstance(other, _MachineAlias) else other)

    def __hash__(self):
        return hash(self._m)


class Snapshot:
    """What Machine.snapshot() returns; create_machine(snapshot=...) restores it."""

    def __init__(self, h, d):
        self._h = h
        self.name, self.machine, self.size, self.paused, self.dir = (
            d["name"],
            d["machine"],
            d["size"],
            d["paused"],
            d["dir"],
        )

    def __repr__(self):
        return "<Snapshot '%s' of %s>" % (self.name, self.machine)


class _Block:
    """A log block (log.nested, Machine.nested), for a with statement."""

    def __init__(self, h, msg):
        self._h, self.msg, self._ends = h, msg, []

    def __enter__(self):
        _conn.request({"op": "enter", "h": self._h})
        return None

    def __exit__(self, et, ev, tb):
        _conn.request({"op": "end", "h": self._h, "err": describe(ev) if ev is not None else None})
        return False

    def __repr__(self):
        return "<nested %r>" % self.msg


class _Subtest:
    def __init__(self, name):
        self.name, self._hs = name, []

    def __enter__(self):
        self._hs.append(_conn.request({"op": "subtest", "a": {"name": _enc(self.name)}}))
        return None

    def __exit__(self, et, ev, tb):
        h = self._hs.pop()
        _conn.request({"op": "end", "h": h, "err": describe(ev) if ev is not None else None})
        return False

    def __repr__(self):
        return "<subtest %r>" % self.name


def subtest(name):
    """A named log block for a with statement; its failure is reported under its name."""
    return _Subtest(name)


class PollingCondition:
    """A condition checked before every machine command while its with
    block runs (see polling_condition)."""

    def __init__(self, fun, args):
        self._fun = fun
        self._fid = _conn.register(fun)
        a = {"fun": {"$": "fn", "v": self._fid}}
        for k, v in args.items():
            if v is not _UNSET:
                a[k] = _enc(v)
        if "description" not in a:
            doc = inspect.getdoc(fun)
            a["description"] = doc.strip() if doc else getattr(fun, "__name__", "condition")
        r = _conn.request({"op": "cond", "name": getattr(fun, "__name__", "condition"), "a": a})
        self._h, self.description = r["h"], r["description"]

    def __call__(self, *args, **kwargs):
        return self._fun(*args, **kwargs)

    def __enter__(self):
        _conn.request({"op": "cond_on", "h": self._h})
        return self

    def __exit__(self, et, ev, tb):
        _conn.request({"op": "cond_off", "h": self._h})
        return False

    def wait(self, timeout=_UNSET):
        """Retry the condition (ignoring its interval) until it holds."""
        a = {} if timeout is _UNSET else {"timeout": _enc(timeout)}
        _conn.request({"op": "cond_wait", "h": self._h, "a": a})

    def __repr__(self):
        return "<polling condition %r>" % self.description


def polling_condition(fun=None, *, interval=_UNSET, seconds_interval=_UNSET, description=_UNSET):
    """A condition checked before every machine command while its with block runs (also a decorator)."""
    args = {"interval": interval, "seconds_interval": seconds_interval, "description": description}

    def make(f):
        if not callable(f):
            raise TypeError("polling_condition: for parameter fun: got %s, want a function" % type(f).__name__)
        return PollingCondition(f, args)

    if fun is None:
        return make
    return make(fun)


def test_script():
    """Run the configured test script again (in the interactive shell)."""
    raise VMDriverError("test_script: the test script is already running; it cannot run itself")


# The globals the engine implements itself, checked against the table.
_ENGINE = {"subtest": subtest, "polling_condition": polling_condition, "test_script": test_script}


class _Tester(unittest.TestCase):
    """`t`: unittest assertions failing with RequestedAssertionFailed."""

    failureException = RequestedAssertionFailed
    maxDiff = None

    def runTest(self):
        pass


class _Namespace:
    def __init__(self, name, **attrs):
        self._name = name
        self.__dict__.update(attrs)

    def __repr__(self):
        return "<%s>" % self._name


class VLan:
    """A virtual LAN of the run: nr, socket_dir and pid (VDE switches), kind and bridge."""

    def __init__(self, d):
        self.nr, self.socket_dir, self.pid = d["nr"], d["socket_dir"], d["pid"]
        self.kind, self.bridge = d.get("kind", "vde"), d.get("bridge", "")

    def __repr__(self):
        return "<VLan %d>" % self.nr


def _check_engine_globals(table):
    """Fails if a global implemented here does not take the table's parameters."""
    for g in table["globals"]:
        if not g["engine"]:
            continue
        fn = _ENGINE.get(g["name"])
        if fn is None:
            raise VMDriverError("bridge: engine global %s is not implemented" % g["name"])
        got = [p.name for p in inspect.signature(fn).parameters.values()]
        want = [p["name"] for p in g["params"]]
        if got != want:
            raise VMDriverError("bridge: %s takes %s, the table says %s" % (g["name"], got, want))


def _static_globals():
    """The globals that are the same in every run (t aside)."""
    return {
        "Machine": Machine,
        "BaseMachine": BaseMachine,
        "QemuMachine": QemuMachine,
        "Snapshot": Snapshot,
        "PollingCondition": PollingCondition,
        "VMDriverError": VMDriverError,
        "MachineError": MachineError,
        "RequestedAssertionFailed": RequestedAssertionFailed,
        "PollingConditionError": PollingConditionError,
        "os": os,
    }


def _global_names(hello):
    """The names a run with hello's machines and VLANs predeclares."""
    names = set(_static_globals()) | {"t", "log", "machines", "driver", "vlans", "__name__"}
    names |= {g["name"] for g in hello["api"]["globals"]}
    names |= {m["pyname"] for m in hello["machines"]}
    if len(hello["machines"]) == 1:
        names.add("machine")
    names |= {"vlan%d" % v["nr"] for v in hello["vlans"]}
    return names


def _build(hello):
    """Makes the API from the engine's table and returns the script's globals."""
    table = hello["api"]
    _check_engine_globals(table)
    for spec in table["methods"]:
        setattr(Machine, spec["name"], _make_function(spec, "m", True))
    for a in table["attrs"]:
        if a["name"] == "name":
            setattr(Machine, "name", property(lambda self: self._name, doc=a["doc"]))
            continue
        setattr(
            Machine,
            a["name"],
            property(lambda self, n=a["name"]: _conn.request({"op": "attr", "m": self._h, "name": n}), doc=a["doc"]),
        )
    g = _static_globals()
    g.update({"__name__": "__main__", "__builtins__": builtins, "t": _Tester()})
    for spec in table["globals"]:
        g[spec["name"]] = _ENGINE[spec["name"]] if spec["engine"] else _make_function(spec, "g", False)
    log = {spec["name"]: _make_function(spec, "log", False) for spec in table["log"]}
    g["log"] = _Namespace("log", **log)
    machines = []
    for m in hello["machines"]:
        obj = m["m"]
        machines.append(obj)
        g[m["pyname"]] = obj
    g["machines"] = machines
    if len(machines) == 1 and "machine" not in g:
        g["machine"] = _MachineAlias(machines[0])
    g["driver"] = _Namespace("driver", out_dir=hello["out_dir"], machines=list(machines))
    vlans = []
    for v in hello["vlans"]:
        obj = VLan(v)
        vlans.append(obj)
        g["vlan%d" % obj.nr] = obj
    g["vlans"] = vlans
    global create_machine
    create_machine = g["create_machine"]
    return g


def create_machine(*args, **kwargs):  # replaced by the table's in _build
    raise VMDriverError("create_machine: the bridge is not set up")


def describe(e, keep=False):
    """An exception as the engine reports it: type, message, where in the
    script, and the engine error it came from. keep: the exception goes
    back to the script (a callback's), so it is kept to be re-raised."""
    if isinstance(e, SystemExit) and e.code in (None, 0):
        return None
    go = getattr(e, "_vmdriver_error", None)
    text = str(e)
    if go is not None or isinstance(e, RequestedAssertionFailed):
        msg = text
    else:
        msg = type(e).__name__ + (": " + text if text else "")
    out = {
        "type": type(e).__name__,
        "msg": msg,
        "frames": _frames(e.__traceback__),
        "assertion": isinstance(e, RequestedAssertionFailed),
    }
    if go is not None:
        out["go"] = go
    if isinstance(e, SyntaxError) and go is None:
        out.update(_syntax(e))
    if keep:
        pid = _conn.new_id()
        _conn.raised[pid] = e
        out["py"] = pid
    return out


def _syntax(e):
    return {"syntax": True, "msg": "syntax error: " + (e.msg or "invalid syntax"), "file": e.filename or "",
            "line": e.lineno or 0, "col": e.offset or 0, "src": (e.text or "").rstrip("\r\n")}


def _frames(tb):
    out = []
    here = os.path.realpath(__file__)
    while tb is not None:
        f = tb.tb_frame
        file = f.f_code.co_filename
        real = os.path.realpath(file) if not file.startswith("<") else file
        if real != here and file != "<vmdriver api>" and not real.startswith(_STDLIB):
            line = tb.tb_lineno
            col = 0
            pos = getattr(f.f_code, "co_positions", None)
            if pos is not None and tb.tb_lasti >= 0:
                try:
                    p = list(pos())[tb.tb_lasti // 2]
                    if p[0] == line and p[2] is not None:
                        col = p[2] + 1
                except (IndexError, ValueError):
                    pass
            out.append({"file": file, "line": line, "col": col, "func": f.f_code.co_name,
                        "src": linecache.getline(file, line, f.f_globals).rstrip("\r\n")})
        tb = tb.tb_next
    return out


def _bound_names(tree):
    """Every name the script binds anywhere (a conservative scope)."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif type(node).__name__ in ("MatchAs", "MatchStar") and node.name:
            bound.add(node.name)
        elif type(node).__name__ == "MatchMapping" and node.rest:
            bound.add(node.rest)
    return bound


def _hint(name, candidates):
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return " (did you mean %s?)" % close[0] if close else ""


def _undefined(tree, bound, known):
    """The names the script uses that nothing defines, as the Starlark
    runtime's check finds them; nothing when it imports with *."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return []
    defined = bound | known | set(dir(builtins))
    errs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in defined:
            errs.append({"msg": "undefined: " + node.id + _hint(node.id, known | bound),
                         "line": node.lineno, "col": node.col_offset + 1})
    return errs


def _method_errors(tree, table, names, bound):
    """The machine methods a script calls that the table lacks or vmdriver
    does not support, found before anything runs (names: the machine
    globals; those the script rebinds are its own)."""
    known = {m["name"]: m for m in table["methods"]}
    attrs = {a["name"] for a in table["attrs"]}
    every = set(known) | attrs
    errs = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            continue
        var, attr = node.value.id, node.attr
        if var not in names or var in bound or attr.startswith("_") or attr in attrs:
            continue
        m = known.get(attr)
        if m is not None and not m["unsupported"]:
            continue
        if m is not None:
            msg = "%s: not supported yet (%s)" % (attr, m["unsupported"])
        else:
            msg = 'machine %s has no attribute or method "%s"%s' % (var, attr, _hint(attr, every))
        line = getattr(node, "end_lineno", node.lineno)
        col = getattr(node, "end_col_offset", None)
        col = col - len(attr) + 1 if col is not None else node.col_offset + 1
        errs.append({"msg": msg, "line": line, "col": col})
    return errs


def _check(hello, source, filename):
    """Compiles the script and checks its machine methods; runs nothing."""
    try:
        tree = compile(source, filename, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
        compile(tree, filename, "exec", dont_inherit=True)
    except SyntaxError as e:
        return [_syntax(e)]
    names = {m["pyname"] for m in hello["machines"]}
    if len(names) == 1:
        names.add("machine")
    bound = _bound_names(tree)
    errs = _undefined(tree, bound, _global_names(hello)) + _method_errors(tree, hello["api"], names, bound)
    if hello.get("fork"):
        errs += _split(tree)[3]
    errs.sort(key=lambda e: (e["line"], e["col"]))
    return [dict(e, syntax=True, file=filename) for e in errs]


def main(fd):
    global _conn
    _conn = _Conn(fd)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # -c put the working directory first; PYTHONPATH stays
    hello = _conn.recv()
    filename, source = hello["filename"], hello["source"]
    sys.argv = [filename]
    version = "%d.%d.%d" % sys.version_info[:3]
    if hello.get("check"):
        _conn.send({"op": "done", "version": version, "errs": _check(hello, source, filename)})
        return
    try:
        g = _build(hello)
    except Exception as e:  # noqa: BLE001 - reported to the engine
        _conn.send({"op": "done", "version": version, "err": describe(e)})
        return
    # Tracebacks and errors show the script's lines, even for <eval>.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as e:
        _conn.send({"op": "done", "version": version, "err": _syntax(e)})
        return
    out = {"op": "done", "version": version}
    if hello.get("fork"):
        out.update(_run_forked(source, filename, g))
    else:
        out["err"] = _exec(code, g)
    sys.stdout.flush()
    sys.stderr.flush()
    _conn.send(out)


def _exec(code, g):
    """Runs code in g; returns its failure as the engine reports one."""
    try:
        exec(code, g)  # noqa: S102 - running the test script is the point
    except TestStopped:
        return {"type": "TestStopped", "msg": "stopped", "stopped": True, "frames": []}
    except BaseException as e:  # noqa: B036 - every failure is the script's result
        return describe(e)
    return None


def _subtest_name(stmt):
    """The name of a top-level `with subtest(...)` statement ("" when it
    is not a literal), or None for any other statement."""
    if not isinstance(stmt, ast.With):
        return None
    for item in stmt.items:
        c = item.context_expr
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "subtest":
            arg = c.args[0] if c.args else next((k.value for k in c.keywords if k.arg == "name"), None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return arg.value
            return ""
    return None


def _split(tree):
    """Cuts a script for --fork-subtests: set-up, the top-level subtests,
    the tail, and the statements between two subtests (errors)."""
    body = tree.body
    idx = [i for i, st in enumerate(body) if _subtest_name(st) is not None]
    if not idx:
        return body, [], [], []
    first, last = idx[0], idx[-1]
    subs, between = [], []
    for st in body[first:last + 1]:
        name = _subtest_name(st)
        if name is None:
            between.append({"between": True, "line": st.lineno, "col": st.col_offset + 1})
        else:
            subs.append((st, name or "line %d" % st.lineno))
    return body[:first], subs, body[last + 1:], between


def _run_forked(source, filename, g):
    """--fork-subtests: set-up, then each top-level subtest in a fork of
    this interpreter (its own copy of set-up's state) against the
    engine's clones of the machines, one at a time, then the tail."""
    tree = ast.parse(source, filename)
    setup, subs, tail, between = _split(tree)
    if between:
        return {"errs": [dict(e, syntax=True, file=filename) for e in between]}

    def code(stmts):
        return compile(ast.Module(body=stmts, type_ignores=[]), filename, "exec", dont_inherit=True)

    err = _exec(code(setup), g)
    if err is not None or not subs:
        if err is None:
            _conn.request({"op": "fork", "n": 0})
        return {"err": err}
    failed = []
    for i, (stmt, name) in enumerate(subs):
        try:
            _conn.request({"op": "fork", "n": len(subs), "i": i, "name": name})
        except VMDriverError:  # no clones: reported under the subtest's name
            failed.append(name)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                e = _exec(code([stmt]), g)
                sys.stdout.flush()
                _conn.request({"op": "unfork", "err": e})
                status = 0 if e is None else 1
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            failed.append(name)
            if not os.WIFEXITED(status):
                _conn.request({"op": "unfork", "err": {"type": "Died", "msg": "the subtest's interpreter died (status %d)" % status, "frames": []}})
    return {"err": _exec(code(tail), g), "failed": failed, "subtests": len(subs)}


def run(argv):
    """Entry point, as vmdriver starts it: argv is ["-c", DIR, FD]."""
    code = 0
    try:
        main(int(argv[2]))
    except TestStopped:
        pass
    except BaseException:  # noqa: B036 - the engine quotes stderr's end
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            # Threads the script left must not keep the interpreter alive.
            os._exit(code)
