"""The site worker: one long-lived process that runs this site's ClientApp tasks with the medfed code it installed.

The agent starts Flower's SuperNode in `process` isolation, so the SuperNode executes nothing itself. This worker is
the site's SuperExec: it acquires each ClientApp task from the SuperNode's Runtime API (authenticated with a secret
only the agent holds), checks that the app bundle the server sent is this site's own medfed, and runs the message
through the installed `client.app` in this process. The bundle's code is never installed or imported. Because the
process lives across messages, the site's data, its noise plans and torch stay loaded between rounds.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import io
import logging
import sys
import threading
import time
import tomllib
import zipfile
from pathlib import Path

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.message_pb2 import PullObjectRequest, PullObjectResponse  # pylint: disable=E0611
from flwr.proto.runtime_pb2 import (  # pylint: disable=E0611
    AcquireTaskRequest,
    PushAppMessagesRequest,
    PushAppMessagesResponse,
)
from flwr.supercore.constant import TaskType
from flwr.supercore.fab import Fab
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SuperExecAuthHttpInterceptor,
)
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from client.admission import SITE_REFUSED
from client.inflight import Inflight
from client.receipts import receipt
from client.site import release_site_data
from client.status import StatusFile, now

log = logging.getLogger("medfed.site")
PACKAGES = ("client", "server", "shared", "simulations")  # medfed's code: what must match the bundle file for file
ACQUIRE = "/flwr.proto.Runtime/AcquireTask"
OBJECT_POLL_S = 0.05
# The worker asks its SuperNode for a task every 0.25 s while a study is running, i.e. within 30 s of its last task (a
# round's next message follows the last reply within seconds), and every 1 s, Flower's own executor's pace, when
# idle. At 0.1 s throughout, a site and its SuperNode spent 6 % of a core on polls.
POLL_S = {"running": 0.25, "idle": 1.0}
RUNNING_S = 30.0
OBJECT_WAIT_S = 10.0
# The SuperNode confirms a message right after the worker could read it, so its outcome follows within milliseconds;
# a SuperLink that went down at that moment holds the confirmation until it is back.
RECEIPT_WAIT_S = 60.0


def installed_code() -> dict[str, str]:
    """SHA-256 of every Python file of the medfed this site installed, by its path inside the app bundle."""
    digests = {}
    for package in PACKAGES:
        root = Path(importlib.import_module(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            digests[f"{package}/{path.relative_to(root).as_posix()}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def foreign_code(fab: Fab, installed: dict[str, str], version: str) -> str | None:
    """Why the app bundle is not exactly this site's installed medfed (version and every code file), or None."""
    try:
        bundle = zipfile.ZipFile(io.BytesIO(fab.content))
        project = tomllib.loads(bundle.read("pyproject.toml").decode())["project"]
        sent = {
            name: hashlib.sha256(bundle.read(name)).hexdigest()
            for name in bundle.namelist()
            if name.endswith(".py") and name.split("/", 1)[0] in PACKAGES
        }
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"the app bundle is not a medfed app ({type(exc).__name__})"
    if project.get("name") != "medfed" or project.get("version") != version:
        return f"the app is {project.get('name')} {project.get('version')}, this site runs medfed {version}"
    changed = sorted(name for name in set(sent) | set(installed) if sent.get(name) != installed.get(name))
    if changed:
        return f"the app's code differs from this site's medfed {version} in {len(changed)} file(s): " + ", ".join(
            changed[:5]
        )
    return None


# Linux's OOM killer scores processes from -1000 to 1000; should the machine run out of memory all the same (a study
# past what its sizing saw), the worker goes first, not the hospital's other services, and the agent restarts it.
OOM_SCORE_ADJ = 500


def oom_first() -> None:
    """Ask Linux to end this worker before the machine's other processes if memory runs out."""
    try:
        Path("/proc/self/oom_score_adj").write_text(str(OOM_SCORE_ADJ))
    except OSError as exc:  # not Linux, or a container that forbids it
        log.info("the site worker keeps the OOM killer's default score (%s)", exc.strerror)


def release() -> None:
    """Free the previous study's data and, on a GPU, the memory torch still caches for it."""
    release_site_data()
    torch = sys.modules.get("torch")  # imported only once a message has trained or evaluated
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class RuntimeClient(RuntimeHttpClient):
    """The SuperNode's Runtime API, asking again every 50 ms for an object the SuperNode is still receiving, and
    noting when it took a task's reply.

    The SuperNode offers a task as soon as the message's header arrives and only then downloads its content from
    the SuperLink. Flower's object pull backs off 1 s, then 2 s, on each miss: a warm worker, which asks at once,
    lost 1 to 3.5 s per message to that backoff. After OBJECT_WAIT_S the miss is Flower's again (its backoff and
    its limits on tries and time).

    A task has its reply once the SuperNode took the reply's header (`PushMessages`), whatever becomes of its
    content: the SuperNode may send it, or let it go because its run ended as it was sent (it then drops the
    content the worker is still pushing). A second reply to that task would wait in the SuperNode and go out in
    place of the next message's reply, and every reply after it one message late.
    """

    reply_taken = False
    record: Path | None = None  # the in-flight record of the task's message: it needs no other answer once taken

    def PushMessages(self, request: PushAppMessagesRequest) -> PushAppMessagesResponse:
        """Hand the SuperNode the task's reply; from then on the task has one."""
        response = super().PushMessages(request)
        self.reply_taken = True
        if self.record is not None:
            self.record.unlink(missing_ok=True)
        return response

    def PullObject(self, request: PullObjectRequest) -> PullObjectResponse:
        """The object, or Flower's "not available yet" once it has been missing for OBJECT_WAIT_S."""
        deadline = time.monotonic() + OBJECT_WAIT_S
        while True:
            response = super().PullObject(request)
            if response.object_available or not response.object_found or time.monotonic() >= deadline:
                return response
            time.sleep(OBJECT_POLL_S)


def _runtime_client(address: str, interceptors: list) -> RuntimeClient:
    return RuntimeClient.from_server_address(
        server_address=address,
        insecure=True,  # the SuperNode's Runtime API listens on loopback only
        root_certificates=None,
        interceptors=interceptors,
        retry_invoker=make_simple_http_retry_invoker(),
    )


class InstalledApp:
    """Runs a task's message through the installed ClientApp, after checking that the server's bundle is it."""

    def __init__(self, site: str, app: ClientApp | None = None) -> None:
        if app is None:
            from client.app import app  # the installed ClientApp, never the bundle's
        self.site, self.app = site, app
        self.version = importlib.metadata.version("medfed")
        self.installed = installed_code()
        self.checked: dict[str, str | None] = {}  # bundle's SHA-256 -> why it is refused (None: it is this medfed)
        self.run_id = -1

    def __call__(self, message: Message, context: Context, fab: Fab) -> Message:
        """The installed app's reply; a refusal naming the site when the bundle is not its medfed; an error naming
        the site when the app raised."""
        digest = hashlib.sha256(fab.content).hexdigest()  # ours, not the hash the server names: 0.5 ms for 500 kB
        if digest not in self.checked:
            self.checked[digest] = foreign_code(fab, self.installed, self.version)
        problem = self.checked[digest]
        if problem is not None:
            log.error("site '%s' refuses to run the server's app: %s", self.site, problem)
            reason = f"site '{self.site}' runs only its own installed medfed {self.version}; the app sent differs"
            return Message(Error(code=SITE_REFUSED, reason=reason), reply_to=message)
        if message.metadata.run_id != self.run_id:  # a new study: only its data stays in memory
            self.run_id = message.metadata.run_id
            release()
        try:
            return self.app(message=message, context=context)
        except Exception as exc:  # without a reply, the SuperNode would wait for one forever
            log.exception("site '%s' failed on a %s message", self.site, message.metadata.message_type)
            reason = f"site '{self.site}': internal error in its worker ({type(exc).__name__})"
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message)


class SiteWorker:
    """Acquires ClientApp tasks from the SuperNode's Runtime API and runs each with the installed app, in turn.

    Each task's message is pulled in a thread of its own and only the app runs one task at a time: a message whose
    content never reaches the SuperNode (its SuperLink died mid-transfer) waits in its thread without holding up
    the next one, as it would in Flower's own one-process-per-message executor.
    """

    def __init__(
        self, runtime_address: str, secret: bytes, app: InstalledApp, inflight: Inflight, status: StatusFile
    ) -> None:
        self.address, self.app, self.inflight, self.running = runtime_address, app, inflight, threading.Lock()
        self.status = status
        self.client = _runtime_client(
            runtime_address,
            [
                RuntimeVersionHttpInterceptor(component_name="SuperExec"),
                SuperExecAuthHttpInterceptor(master_secret=secret, protected_methods={ACQUIRE}),
            ],
        )

    def serve(self) -> None:
        """Run tasks until the process is stopped."""
        app = self.app
        log.info("site '%s': worker ready (medfed %s, %d code files)", app.site, app.version, len(app.installed))
        running_until = 0.0
        while True:
            if self.run_next():
                running_until = time.monotonic() + RUNNING_S
            else:
                time.sleep(POLL_S["running" if time.monotonic() < running_until else "idle"])

    def answer_interrupted(self) -> None:
        """Reply to each message a worker that died was handling, saying so, so that its SuperNode moves on."""
        for path, token, reply in self.inflight.left():
            task = self._task_client(token)
            try:
                context = Context(reply.metadata.run_id, reply.metadata.src_node_id, {}, RecordDict(), {})
                push_message(task, reply, context)
                push_task_output(client=task, context=None, sub_status=SubStatus.FAILED, details=reply.error.reason)
                log.warning(
                    "site '%s': answered the %s message the previous worker stopped on: no update was sent",
                    self.app.site,
                    reply.metadata.message_type,
                )
            except Exception as exc:  # its task already ended: Flower answered it once the worker's heartbeat stopped
                log.warning("site '%s': a message the previous worker stopped on is closed (%s)", self.app.site, exc)
            finally:
                task.close()
                path.unlink(missing_ok=True)

    def run_next(self) -> bool:
        """Acquire and run one task; False when none was waiting."""
        res = self.client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
        if not (res.HasField("task") and res.token):
            return False
        threading.Thread(target=self._run, args=(res.token,), daemon=True).start()
        return True

    def _task_client(self, token: str) -> RuntimeClient:
        return _runtime_client(
            self.address,
            [RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"), RuntimeTokenHttpInterceptor(token)],
        )

    def _run(self, token: str) -> None:
        """Run one task; its message always gets a reply, the app's or an error, or else Flower's own.

        Flower's SuperNode handles one message at a time and waits without limit for its reply. A task ended as
        failed without a reply would leave that wait, and the site, stuck for good; a task left unfinished instead
        (its heartbeat stopped) is answered by the SuperNode itself with Flower's "ClientApp crashed" error.
        """
        task = self._task_client(token)
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(task))
        heartbeat.start()
        message: Message | None = None
        context: Context | None = None
        status, details = SubStatus.FAILED, "the site worker failed"
        try:
            message, context, _run, fab = pull_task_input(task)
            taken = receipt(self.inflight.folder, message.metadata.message_id, RECEIPT_WAIT_S)
            if taken == "dropped":  # the SuperNode waits for no reply to it (client.receipts): none is sent
                log.info(
                    "site '%s': the SuperNode let a %s message go as it arrived (its log says why); not run",
                    self.app.site,
                    message.metadata.message_type,
                )
                details = "the SuperNode let this message go as it arrived"
                return
            if taken is None:
                log.warning(
                    "site '%s': the SuperNode did not confirm a %s message within %.0f s; running it",
                    self.app.site,
                    message.metadata.message_type,
                    RECEIPT_WAIT_S,
                )
            task.record = self.inflight.keep(token, message, self.app.site)
            with self.running:
                started = time.monotonic()
                reply = self.app(message, context, fab)
                self._handled(message, reply, time.monotonic() - started)
            push_message(task, reply, context)
            status, details = SubStatus.COMPLETED, ""
        except Exception as exc:  # a task's failure must not end the worker: the next message is served as usual
            if task.reply_taken:  # its content was cut off: the SuperNode let the reply go, or lost its link
                log.warning(
                    "site '%s': the SuperNode took the reply to a %s message but not all its content (%s); its run "
                    "has probably ended. No second reply is sent",
                    self.app.site,
                    message.metadata.message_type,
                    type(exc).__name__,
                )
                details = f"the reply's content could not be handed over ({type(exc).__name__})"
            else:
                log.exception("site '%s': a task failed in the worker", self.app.site)
                if message is not None and context is not None:
                    status = self._reply_error(task, message, context, exc)
        finally:
            heartbeat.stop()
            try:
                if status is not None:
                    push_task_output(client=task, context=context, sub_status=status, details=details)
            except Exception as exc:  # the task already ended (its SuperLink or run is gone): nothing to report to
                log.warning("site '%s': could not close a task (%s)", self.app.site, exc)
            finally:
                task.close()

    def _handled(self, message: Message, reply: Message, seconds: float) -> None:
        """Log one line for the message and record it in the worker's status file (`medfed-site status`)."""
        outcome = f"refused: {reply.error.reason}" if reply.has_error() else "answered"
        kind, run = message.metadata.message_type, message.metadata.run_id
        log.info("site '%s': %s message of run %d %s in %.1f s", self.app.site, kind, run, outcome, seconds)
        last = {"at": now(), "type": kind, "run": run, "outcome": outcome, "seconds": round(seconds, 1)}
        self.status.update(handled=self.status.state.get("handled", 0) + 1, last=last)

    def _reply_error(self, task: RuntimeClient, message: Message, context: Context, exc: Exception) -> str | None:
        """Push an error reply naming the site; the task's final status, or None to leave the task to expire."""
        reason = f"site '{self.app.site}': its worker could not handle the message ({type(exc).__name__})"
        try:
            push_message(
                task,
                Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message),
                context,
            )
        except Exception:
            if task.reply_taken:
                return SubStatus.FAILED
            log.warning(
                "site '%s': no reply could be pushed; the SuperNode answers once the task expires", self.app.site
            )
            return None
        return SubStatus.FAILED
