"""Assert-style code grading in two processes, so that the program never touches the test's verdict.

Runs inside the sandbox with the sandbox's interpreter (stdlib only; copied in as harness.py):

    python -I harness.py tester      # job (JSON line) on stdin; one verdict line per test on stdout

The *tester* runs the row's tests (dataset code, trusted) in its own process. The program runs in a
*server* process that the tester starts (`harness.py server`) and talks to over two pipes. Every name
a test takes from the program is a `Remote` proxy: calling it sends the arguments as plain data, the
server calls the program's function and sends the result back as plain data, which the tester rebuilds
from its own types (exact int, float, str, bytes, list, tuple, dict, set, ... checked on both sides).
Anything else the program returns stays in the server as an opaque handle that equals only itself.
So the test's comparisons run in the tester on values the program cannot make lie:
- a returned object whose __eq__ always answers True never leaves the server (it is a handle);
- builtins the program patches (`builtins.abs = ...`) are the server's, not the tester's;
- frames, tracebacks, excepthooks and `gc` objects the program can reach are the server's; the tests,
  their expected values and the verdict channel live only in the tester, which is not dumpable
  (no ptrace, no /proc/PID/mem or /fd of it) and holds the only copy of the verdict fd and nonce.
The helpers a code prompt defines (HumanEval's `poly`, `encode_cyclic`) run in the tester from the
prompt's own text; only the entry point and the names the prompt does not define come from the program.

Each test reloads the program in a fresh namespace (module-level state does not leak between tests);
a test that overruns `timeout_s` fails and the server is replaced. The grader (rewards/code.py) counts
a test as passed only on a verdict line that carries its nonce.
"""
from __future__ import annotations

import builtins
import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys

if __package__:  # imported by the grader or the tests
    from rewards.code_wire import ProtocolError, as_list, as_str, decode, encode, error_of, read_message, write_message
else:  # run in the sandbox as harness.py beside code_wire.py; the path entry goes before the program runs
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from code_wire import ProtocolError, as_list, as_str, decode, encode, error_of, read_message, write_message
    del sys.path[0]

_PR_SET_DUMPABLE = 4
_MUTABLE = (list, dict, set, bytearray)


class Overrun(BaseException):
    """The test overran its time; a BaseException so that a test's `except Exception` cannot swallow it."""


class RemoteError(Exception):
    """The program raised an exception that is not one of Python's built-in ones."""


# --- Server: the program's side (untrusted) ----------------------------------------------------

class Server:
    """Holds the program's namespace and the objects handed out as handles; answers one op at a time."""

    def __init__(self, program_path: str):
        self.program_path = program_path
        self.namespace: dict = {}
        self.objects: list = []

    def handle_of(self, value) -> list:
        self.objects.append(value)
        return ["h", len(self.objects) - 1, _type_name(value)]

    def resolve(self, data) -> object:
        index = data[1] if len(data) > 1 else None
        if type(index) is not int or not 0 <= index < len(self.objects):
            raise ProtocolError(f"unknown handle {index!r}")
        return self.objects[index]

    def value(self, data):
        return decode(data, self.resolve)

    def load(self) -> dict:
        """Run the program afresh; reply with its module-level names (values are fetched one by one)."""
        self.objects.clear()
        with open(self.program_path, encoding="utf-8") as f:
            source = f.read()
        self.namespace = {"__name__": "__candidate__", "__builtins__": builtins}
        exec(compile(source, "solution.py", "exec"), self.namespace)
        names = {}
        for name, value in self.namespace.items():
            if type(name) is str and not name.startswith("__"):
                names[name] = ["m", value.__name__] if type(value) is type(sys) else ["v"]
        return {"names": names}

    def run(self, message: dict) -> dict:
        op = message.get("op")
        if op == "load":
            return self.load()
        if op == "global":
            return {"value": encode(self.namespace[as_str(message.get("name"))], self.handle_of)}
        target = self.value(message.get("target"))
        if op == "call":
            args = [self.value(a) for a in as_list(message.get("args", []))]
            kwargs = {k: self.value(v) for k, v in as_list(message.get("kwargs", []))}
            result = target(*args, **kwargs)
            # Arguments the function changed in place (a list it sorted) go back, so tests can see it.
            back = [encode(a, self.handle_of) if type(a) in _MUTABLE else None for a in args]
            return {"value": encode(result, self.handle_of), "args": back}
        operations = {"getattr": lambda: getattr(target, as_str(message.get("name"))),
                      "iter": lambda: iter(target), "next": lambda: next(target), "len": lambda: len(target),
                      "getitem": lambda: target[self.value(message.get("key"))],
                      "contains": lambda: self.value(message.get("key")) in target,
                      "str": lambda: str(target), "repr": lambda: repr(target)}
        if op not in operations:
            raise ProtocolError(f"unknown op {op!r}")
        return {"value": encode(operations[op](), self.handle_of)}


def _type_name(value) -> str:
    try:
        return str(type(value).__name__)[:100]
    except BaseException:
        return "object"


def serve(program_path: str) -> None:
    """The server's loop. The channel moves to private fds; fds 0/1 become /dev/null and stderr, so
    what the program prints cannot break the protocol."""
    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)
    server = Server(program_path)
    while True:
        try:
            message = read_message(channel_in)
        except ProtocolError:  # the tester closed the channel (or sent garbage): nothing left to do
            return
        try:
            reply = server.run(message)
            write_message(channel_out, reply)
        except BaseException as exc:  # the program's own error (SystemExit too) goes to the tester
            write_message(channel_out, {"error": error_of(exc)})


# --- Tester: the tests' side (trusted) ---------------------------------------------------------

class Connection:
    """The tester's end of one server process."""

    def __init__(self, harness: str, program: str):
        self.process = subprocess.Popen([sys.executable, "-I", harness, "server", program],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        self.broken = False

    def request(self, message: dict):
        """Send one op and return its decoded value; raises the program's exception if it raised one."""
        try:
            write_message(self.process.stdin, message)
            reply = read_message(self.process.stdout)
        except (OSError, ProtocolError, Overrun):
            self.broken = True  # a half-finished exchange: the next test gets a new server
            raise
        if "error" in reply:
            raise _local_exception(reply["error"])
        if "value" not in reply and "names" not in reply:
            raise ProtocolError("a reply without a value")
        return reply

    def value(self, reply: dict):
        return decode(reply["value"], self.proxy)

    def proxy(self, data) -> Remote:
        return Remote(self, data[1], data[2] if len(data) > 2 and type(data[2]) is str else "object")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def _local_exception(error) -> BaseException:
    """The tester's own exception for the program's: a built-in Exception type by name, else RemoteError."""
    name, text = (error + ["", ""])[:2] if type(error) is list else ("", "")
    name, text = (name if type(name) is str else ""), (text if type(text) is str else "")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls is not StopAsyncIteration:
        try:
            return cls(text)
        except Exception:  # a built-in that wants other arguments (UnicodeDecodeError)
            pass
    return RemoteError(f"{name}: {text}")


class Remote:
    """A program object the tester may call or inspect, but never compare by value."""

    __slots__ = ("_connection", "_handle", "_type")

    def __init__(self, connection: Connection, handle, type_name: str):
        object.__setattr__(self, "_connection", connection)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_type", type_name)

    def _op(self, op: str, **fields):
        connection = object.__getattribute__(self, "_connection")
        reply = connection.request({"op": op, "target": ["h", object.__getattribute__(self, "_handle")], **fields})
        return reply, connection

    def _plain(self, value) -> object:
        return encode(value, _handle_or_refuse)

    def __call__(self, *args, **kwargs):
        reply, connection = self._op("call", args=[self._plain(a) for a in args],
                                     kwargs=[[k, self._plain(v)] for k, v in kwargs.items()])
        _copy_back(args, reply.get("args"), connection)
        return connection.value(reply)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        reply, connection = self._op("getattr", name=name)
        return connection.value(reply)

    def __iter__(self):
        reply, connection = self._op("iter")
        iterator = connection.value(reply)
        if not isinstance(iterator, Remote):
            yield from iterator
            return
        while True:
            try:
                reply, _ = iterator._op("next")
            except StopIteration:
                return
            yield connection.value(reply)

    def __len__(self) -> int:
        reply, connection = self._op("len")
        length = connection.value(reply)
        if type(length) is not int:
            raise TypeError("len() of a program object was not an int")
        return length

    def __getitem__(self, key):
        reply, connection = self._op("getitem", key=self._plain(key))
        return connection.value(reply)

    def __contains__(self, key) -> bool:
        reply, connection = self._op("contains", key=self._plain(key))
        return connection.value(reply) is True

    def __str__(self) -> str:
        reply, connection = self._op("str")
        text = connection.value(reply)
        return text if type(text) is str else ""

    def __repr__(self) -> str:  # local: an assertion message must not call into the program
        return f"<program's {object.__getattribute__(self, '_type')} object>"


def _handle_or_refuse(value) -> list:
    if isinstance(value, Remote):
        return ["h", object.__getattribute__(value, "_handle")]
    raise TypeError(f"a test passed a {type(value).__name__} to the program; only plain data "
                    "(numbers, strings, bytes, lists, tuples, dicts, sets) and program objects can be passed")


def _copy_back(args: tuple, changed, connection: Connection) -> None:
    """Apply in-place changes the program made to list/dict/set arguments to the test's own objects."""
    if type(changed) is not list:
        return
    for original, data in zip(args, changed):
        if data is None or type(original) not in _MUTABLE:
            continue
        new = decode(data, connection.proxy)
        if type(new) is not type(original):
            continue
        if type(original) in (list, bytearray):
            original[:] = new
        else:
            original.clear()
            original.update(new)


class TestGlobals(dict):
    """A test's globals: the program's module-level names are fetched when a test first uses one.

    Lazy, so that a big global the tests never read is never copied. No program name may shadow a
    builtin (the entry point excepted): a test's `abs` or `len` is always Python's own.
    """

    def __init__(self, connection: Connection, names: dict, entry_point: str | None):
        super().__init__(__name__="__test__", __builtins__=builtins)
        self.connection = connection
        self.program_names = set()
        for name, kind in names.items():
            if type(name) is not str or not name.isidentifier() or (hasattr(builtins, name) and name != entry_point):
                continue
            if type(kind) is list and kind[:1] == ["m"]:  # a module: the tester imports its own copy
                module = _stdlib_module(kind[1] if len(kind) > 1 else None)
                if module is not None:
                    self[name] = module
            else:
                self.program_names.add(name)

    def __missing__(self, name: str):
        if name not in self.program_names:
            raise KeyError(name)  # on to the builtins, then NameError
        value = self.connection.value(self.connection.request({"op": "global", "name": name}))
        self[name] = value
        return value


def namespace_for(names: dict, connection: Connection, prompt: str | None, entry_point: str | None) -> TestGlobals:
    """What a test sees: the program's names, then the code prompt run here.

    The prompt is trusted text (dataset): what it defines (HumanEval's `poly`) is the tester's own, so
    the program cannot redefine a helper the tests call; only the entry point comes from the program.
    """
    namespace = TestGlobals(connection, names, entry_point)
    if prompt:
        try:
            exec(compile(prompt, "prompt.py", "exec"), namespace)
        except Exception as exc:  # a prompt that does not run on its own: the program's names stand
            name, text = error_of(exc)
            print(f"harness: the code prompt does not run on its own ({name}: {text}); the program's "
                  "definitions of its helpers are used", file=sys.stderr)
        if entry_point in namespace.program_names:
            namespace.pop(entry_point, None)  # looked up in the program again
    return namespace


def _stdlib_module(name):
    if type(name) is not str or name.split(".")[0] not in sys.stdlib_module_names:
        return None
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def run_test(connection: Connection, job: dict, test: str) -> str | None:
    """None when the test passed, else why it failed (one line)."""
    signal.setitimer(signal.ITIMER_REAL, float(job["timeout_s"]))
    try:
        names = connection.request({"op": "load"}).get("names")
        if type(names) is not dict:
            raise ProtocolError("load did not return names")
        namespace = namespace_for(names, connection, job.get("prompt"), job.get("entry_point"))
        exec(compile(test, "test.py", "exec"), namespace)
        return None
    except Overrun:
        connection.broken = True
        return "timeout"
    except BaseException as exc:  # the test failed (AssertionError) or could not run
        name, text = error_of(exc)
        return f"{name}: {text}" if text else name
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _on_alarm(signum, frame):
    raise Overrun()


def tester(harness: str) -> None:
    job = json.loads(sys.stdin.readline())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the job (tests, nonce) is read: keep no fd to it
    # Not dumpable: a same-uid program can neither ptrace us nor open our /proc/PID/{mem,fd,environ}.
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    verdicts = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what tests print goes to stderr, never among the verdicts
    signal.signal(signal.SIGALRM, _on_alarm)
    connection = None
    for index, test in enumerate(job["tests"]):
        if connection is None or connection.broken or connection.process.poll() is not None:
            if connection is not None:
                connection.close()
            connection = Connection(harness, "solution.py")
        try:
            reason = run_test(connection, job, test)
        except Overrun:  # the alarm fired as the test ended, before it was cancelled
            connection.broken, reason = True, "timeout"
        outcome = "pass" if reason is None else "fail"
        verdicts.write(f"{job['nonce']} {index} {outcome} {json.dumps(reason)}\n")
        verdicts.flush()
    if connection is not None:
        connection.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        serve(sys.argv[2])
    else:
        tester(os.path.abspath(__file__))
