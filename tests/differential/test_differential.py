"""The differential test: every scenario, byte for byte, gearmand versus gearshift.

Each scenario in :mod:`._scenarios` is played against a fresh gearmand (the Debian
``gearman-job-server`` package, 1.1.20) and a fresh ``gearshift serve`` with the same
options; the two normalised transcripts must be identical. The normalisation (job
handles, fds, addresses, pid, version) is described in :mod:`._session`.

Where gearshift differs *on purpose*, the scenario is listed in ``EXPECTED_DIFFERENCES``
with the reason (mirrored in docs/compatibility.md, "where we differ") and BOTH exact
transcripts: gearmand's, so a different reference build shows up, and ours, so the
intended behaviour is pinned rather than merely tolerated. Nothing is skipped silently.

Runtime: the two servers of a scenario run side by side in two threads (the scripts
mostly wait on sockets), keeping the whole module well under a minute.
"""

from __future__ import annotations

import difflib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from gearshift.testing import gearmand_path

from ._run import run_scenario
from ._scenarios import SCENARIOS

pytestmark = [
    pytest.mark.gearmand,
    pytest.mark.skipif(
        gearmand_path() is None, reason="needs gearmand: apt-get install gearman-job-server"
    ),
]


_DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"


@dataclass(frozen=True)
class ExpectedDifference:
    """A deliberate difference: why, and the exact transcript each server must produce."""

    why: str
    gearmand: tuple[str, ...]
    gearshift: tuple[str, ...]


# Deliberate differences, one entry per scenario. Each pins OUR exact output (and
# gearmand's), so changing either behaviour fails the test until this table and
# docs/compatibility.md are updated together.
EXPECTED_DIFFERENCES: dict[str, ExpectedDifference] = {
    "submit_job_sched": ExpectedDifference(
        why=(
            "gearmand parses SUBMIT_JOB_SCHED and rejects it; gearshift keeps a schedule "
            "(a recurring background job) and answers JOB_CREATED with its key."
        ),
        gearmand=(
            "c1 -> SUBMIT_JOB_SCHED 'f' 'u' '0' '0' '1' '1' '0' 'data'",
            "c1 <- ERROR 'INVALID_COMMAND' 'Command not expected'",
            "c1 -> ECHO_REQ 'still open'",
            "c1 <- ECHO_RES 'still open'",
        ),
        gearshift=(
            "c1 -> SUBMIT_JOB_SCHED 'f' 'u' '0' '0' '1' '1' '0' 'data'",
            "c1 <- JOB_CREATED 'H1'",
            "c1 -> ECHO_REQ 'still open'",
            "c1 <- ECHO_RES 'still open'",
        ),
    ),
    "priority_two_functions": ExpectedDifference(
        why=(
            "Job selection. We follow gearmand 2.0: global priority (a HIGH job of any "
            "function the worker can do beats NORMAL/LOW jobs of the others) plus round robin "
            "(the function just served moves to the back). Debian's gearmand 1.1.20 scans the "
            "worker's functions newest-registration first and takes the first function with "
            "any job, so b's NORMAL and LOW jobs beat a's HIGH job (gearmand issue #173)."
        ),
        gearmand=(
            "c1 -> SUBMIT_JOB_HIGH_BG 'a' 'a-high' ''",
            "c1 <- JOB_CREATED 'H1'",
            "c1 -> SUBMIT_JOB_BG 'a' 'a-normal' ''",
            "c1 <- JOB_CREATED 'H2'",
            "c1 -> SUBMIT_JOB_LOW_BG 'b' 'b-low' ''",
            "c1 <- JOB_CREATED 'H3'",
            "c1 -> SUBMIT_JOB_BG 'b' 'b-normal' ''",
            "c1 <- JOB_CREATED 'H4'",
            "w1 -> CAN_DO 'a'",
            "w1 -> CAN_DO 'b'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H4' 'b' 'b-normal' ''",
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H3' 'b' 'b-low' ''",
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H1' 'a' 'a-high' ''",
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H2' 'a' 'a-normal' ''",
            'w1 -> GRAB_JOB_UNIQ',
            'w1 <- NO_JOB',
        ),
        gearshift=(
            "c1 -> SUBMIT_JOB_HIGH_BG 'a' 'a-high' ''",
            "c1 <- JOB_CREATED 'H1'",
            "c1 -> SUBMIT_JOB_BG 'a' 'a-normal' ''",
            "c1 <- JOB_CREATED 'H2'",
            "c1 -> SUBMIT_JOB_LOW_BG 'b' 'b-low' ''",
            "c1 <- JOB_CREATED 'H3'",
            "c1 -> SUBMIT_JOB_BG 'b' 'b-normal' ''",
            "c1 <- JOB_CREATED 'H4'",
            "w1 -> CAN_DO 'a'",
            "w1 -> CAN_DO 'b'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H1' 'a' 'a-high' ''",
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H4' 'b' 'b-normal' ''",
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H2' 'a' 'a-normal' ''",
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H3' 'b' 'b-low' ''",
            'w1 -> GRAB_JOB_UNIQ',
            'w1 <- NO_JOB',
        ),
    ),
    "wakeup_two_sleepers": ExpectedDifference(
        why=(
            "-w/--worker-wakeup default: we NOOP one sleeping worker per queued job (no "
            "thundering herd); gearmand's default -w 0 NOOPs every sleeping worker."
        ),
        gearmand=(
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "w2 -> CAN_DO 'f'",
            "w2 -> ECHO_REQ 'sync'",
            "w2 <- ECHO_RES 'sync'",
            'w1 -> PRE_SLEEP',
            'w2 -> PRE_SLEEP',
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "w2 -> ECHO_REQ 'sync'",
            "w2 <- ECHO_RES 'sync'",
            "c1 -> SUBMIT_JOB_BG 'f' 'j1' ''",
            "c1 <- JOB_CREATED 'H1'",
            'w1+w2 <- 2 x NOOP',
            "c1 -> SUBMIT_JOB_BG 'f' 'j2' ''",
            "c1 <- JOB_CREATED 'H2'",
            'w1+w2 <- (nothing)',
        ),
        gearshift=(
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "w2 -> CAN_DO 'f'",
            "w2 -> ECHO_REQ 'sync'",
            "w2 <- ECHO_RES 'sync'",
            'w1 -> PRE_SLEEP',
            'w2 -> PRE_SLEEP',
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "w2 -> ECHO_REQ 'sync'",
            "w2 <- ECHO_RES 'sync'",
            "c1 -> SUBMIT_JOB_BG 'f' 'j1' ''",
            "c1 <- JOB_CREATED 'H1'",
            'w1+w2 <- 1 x NOOP',
            "c1 -> SUBMIT_JOB_BG 'f' 'j2' ''",
            "c1 <- JOB_CREATED 'H2'",
            'w1+w2 <- 1 x NOOP',
        ),
    ),
    "epoch_future": ExpectedDifference(
        why=(
            "SUBMIT_JOB_EPOCH in the future: we keep the job in a timer heap and NOOP a "
            "sleeping worker when it falls due (gearmand 2.0 behaviour). 1.1.20 NOOPs at "
            "submission, when the job cannot run yet, and never again (gearmand issue #101)."
        ),
        gearmand=(
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
            'w1 -> PRE_SLEEP',
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "c1 -> SUBMIT_JOB_EPOCH 'f' 'e1' <now+2> 'soon'",
            "c1 <- JOB_CREATED 'H1'",
            'w1 <- NOOP',
            '-- wait 2.5 s',
            'w1 <- (nothing)',
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H1' 'f' 'e1' 'soon'",
        ),
        gearshift=(
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
            'w1 -> PRE_SLEEP',
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "c1 -> SUBMIT_JOB_EPOCH 'f' 'e1' <now+2> 'soon'",
            "c1 <- JOB_CREATED 'H1'",
            'w1 <- (nothing)',
            '-- wait 2.5 s',
            'w1 <- NOOP',
            'w1 -> GRAB_JOB_UNIQ',
            "w1 <- JOB_ASSIGN_UNIQ 'H1' 'f' 'e1' 'soon'",
        ),
    ),
    "unknown_packet_type": ExpectedDifference(
        why=(
            "Unknown packet type: we send ERROR INVALID_COMMAND before closing, so the peer "
            "learns why; gearmand closes silently."
        ),
        gearmand=(
            'c1 -> type 43',
            'c1 <- <connection closed by server>',
        ),
        gearshift=(
            'c1 -> type 43',
            "c1 <- ERROR 'INVALID_COMMAND' 'unknown packet type 43'",
            'c1 <- <connection closed by server>',
        ),
    ),
    "packet_type_zero": ExpectedDifference(
        why=(
            "Type 0 is not a packet type on the wire (it is gearmand's internal marker for "
            "text lines), so it is an unknown packet type: ERROR INVALID_COMMAND, then close."
        ),
        gearmand=(
            'c1 -> type 0',
            'c1 <- <connection closed by server>',
        ),
        gearshift=(
            'c1 -> type 0',
            "c1 <- ERROR 'INVALID_COMMAND' 'unknown packet type 0'",
            'c1 <- <connection closed by server>',
        ),
    ),
    "unknown_magic": ExpectedDifference(
        why=(
            "A header whose magic is neither \\0REQ nor \\0RES cannot be framed: like an "
            "unknown packet type it gets an ERROR (INVALID_MAGIC) before the close; gearmand "
            "closes silently."
        ),
        gearmand=(
            'c1 -> ECHO_REQ with \\0ABC magic',
            'c1 <- <connection closed by server>',
        ),
        gearshift=(
            'c1 -> ECHO_REQ with \\0ABC magic',
            "c1 <- ERROR 'INVALID_MAGIC' 'bad packet magic'",
            'c1 <- <connection closed by server>',
        ),
    ),
    "oversized_body": ExpectedDifference(
        why=(
            "Body size cap (64 MiB by default, --max-packet-size): we answer ERROR "
            "ARGUMENT_TOO_LARGE and close before buffering anything; gearmand has no cap and "
            "waits to receive (and malloc) the whole declared body."
        ),
        gearmand=(
            'c1 -> ECHO_REQ header declaring 100 MiB',
            'c1 <- (nothing)',
        ),
        gearshift=(
            'c1 -> ECHO_REQ header declaring 100 MiB',
            "c1 <- ERROR 'ARGUMENT_TOO_LARGE'"
            " 'packet body of 104857600 bytes exceeds the limit of 67108864'",
            'c1 <- <connection closed by server>',
        ),
    ),
    'can_do_duplicates': ExpectedDifference(
        why=(
            'A repeated CAN_DO for a function a connection already registered is a no-op here; ',
            'gearmand counts every CAN_DO as another worker in `status` and lists the name again ',
            'in `workers`, which overstates capacity to monitoring.',
        ),
        gearmand=(
            "w1 -> CAN_DO 'f'",
            "w1 -> CAN_DO 'f'",
            "w1 -> CAN_DO 'g'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'admin -> status\\r\\n',
            'admin <- f\\t0\\t0\\t2\\ng\\t0\\t0\\t1\\n.\\n',
            'admin -> workers\\r\\n',
            'admin <- FD IP - :\\nFD IP - : g f f\\n.\\n',
            "w1 -> CANT_DO 'f'",
            "w1 -> CANT_DO 'never-registered'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'admin -> status\\r\\n',
            'admin <- f\\t0\\t0\\t0\\ng\\t0\\t0\\t1\\n.\\n',
            'admin -> workers\\r\\n',
            'admin <- FD IP - :\\nFD IP - : g\\n.\\n',
        ),
        gearshift=(
            "w1 -> CAN_DO 'f'",
            "w1 -> CAN_DO 'f'",
            "w1 -> CAN_DO 'g'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'admin -> status\\r\\n',
            'admin <- f\\t0\\t0\\t1\\ng\\t0\\t0\\t1\\n.\\n',
            'admin -> workers\\r\\n',
            'admin <- FD IP - :\\nFD IP - : g f\\n.\\n',
            "w1 -> CANT_DO 'f'",
            "w1 -> CANT_DO 'never-registered'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'admin -> status\\r\\n',
            'admin <- f\\t0\\t0\\t0\\ng\\t0\\t0\\t1\\n.\\n',
            'admin -> workers\\r\\n',
            'admin <- FD IP - :\\nFD IP - : g\\n.\\n',
        ),
    ),
    'cant_do_requeues': ExpectedDifference(
        why=(
            '`show jobs` sets JOB_QUEUED to 1 for a job that is queued or running. gearmand ',
            '1.1.20 shows 0 for a job put back in the queue by CANT_DO, although it is queued and ',
            'will be handed out.',
        ),
        gearmand=(
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
            "w1 -> CANT_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "w1 -> WORK_COMPLETE 'H1' 'too late'",
            "w1 <- ERROR 'JOB_NOT_FOUND' 'Job given in work result not found'",
            'admin -> status\\r\\n',
            'admin <- f\\t1\\t0\\t0\\n.\\n',
            'admin -> show jobs\\r\\n',
            'admin <- H1\\t1\\t0\\t0\\n.\\n',
            "w2 -> CAN_DO 'f'",
            "w2 -> ECHO_REQ 'sync'",
            "w2 <- ECHO_RES 'sync'",
            'w2 -> GRAB_JOB',
            "w2 <- JOB_ASSIGN 'H1' 'f' 'x'",
            "w2 -> WORK_COMPLETE 'H1' 'ok'",
            "c1 <- WORK_COMPLETE 'H1' 'ok'",
            'c1 <- (nothing)',
        ),
        gearshift=(
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
            "w1 -> CANT_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "w1 -> WORK_COMPLETE 'H1' 'too late'",
            "w1 <- ERROR 'JOB_NOT_FOUND' 'Job given in work result not found'",
            'admin -> status\\r\\n',
            'admin <- f\\t1\\t0\\t0\\n.\\n',
            'admin -> show jobs\\r\\n',
            'admin <- H1\\t1\\t0\\t1\\n.\\n',
            "w2 -> CAN_DO 'f'",
            "w2 -> ECHO_REQ 'sync'",
            "w2 <- ECHO_RES 'sync'",
            'w2 -> GRAB_JOB',
            "w2 <- JOB_ASSIGN 'H1' 'f' 'x'",
            "w2 -> WORK_COMPLETE 'H1' 'ok'",
            "c1 <- WORK_COMPLETE 'H1' 'ok'",
            'c1 <- (nothing)',
        ),
    ),
    'can_do_timeout_requeues': ExpectedDifference(
        why=(
            'Same as cant_do_requeues, for a job requeued by a CAN_DO_TIMEOUT expiry: we show ',
            'JOB_QUEUED 1 because the job is in the queue.',
        ),
        gearmand=(
            "w1 -> CAN_DO_TIMEOUT 'f' '1000'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
            '-- wait 1.6 s',
            'c1 <- (nothing)',
            'admin -> show jobs\\r\\n',
            'admin <- H1\\t1\\t0\\t0\\n.\\n',
            "w1 -> WORK_COMPLETE 'H1' 'too late'",
            "w1 <- ERROR 'JOB_NOT_FOUND' 'Job given in work result not found'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
            "w1 -> WORK_COMPLETE 'H1' 'ok'",
            "c1 <- WORK_COMPLETE 'H1' 'ok'",
        ),
        gearshift=(
            "w1 -> CAN_DO_TIMEOUT 'f' '1000'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
            '-- wait 1.6 s',
            'c1 <- (nothing)',
            'admin -> show jobs\\r\\n',
            'admin <- H1\\t1\\t0\\t1\\n.\\n',
            "w1 -> WORK_COMPLETE 'H1' 'too late'",
            "w1 <- ERROR 'JOB_NOT_FOUND' 'Job given in work result not found'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
            "w1 -> WORK_COMPLETE 'H1' 'ok'",
            "c1 <- WORK_COMPLETE 'H1' 'ok'",
        ),
    ),
    'unique_too_long': ExpectedDifference(
        why=(
            'A unique key of exactly 64 bytes is kept whole. gearmand accepts it but stores it ',
            'cut to 63 bytes, so GET_STATUS_UNIQUE with the key the client sent finds nothing.',
        ),
        gearmand=(
            "c1 -> SUBMIT_JOB_BG 'f' 'uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu' 'x'",
            "c1 <- ERROR 'ARGUMENT_TOO_LARGE' 'Unique value too large'",
            "c1 -> ECHO_REQ 'still open'",
            "c1 <- ECHO_RES 'still open'",
            "c1 -> SUBMIT_JOB_BG 'f' 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            "c1 -> SUBMIT_JOB_BG 'f' 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww' 'x'",
            "c1 <- JOB_CREATED 'H2'",
            "c1 -> GET_STATUS_UNIQUE 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww'",
            "c1 <- STATUS_RES_UNIQUE 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww' '1' '0' '0' '0' '0'",
            "c1 -> GET_STATUS_UNIQUE 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv'",
            "c1 <- STATUS_RES_UNIQUE 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv' '0' '0' '0' '0' '0'",
            'admin -> show unique jobs\\r\\n',
            'admin <- vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\\nwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww\\n.\\n',
        ),
        gearshift=(
            "c1 -> SUBMIT_JOB_BG 'f' 'uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu' 'x'",
            "c1 <- ERROR 'ARGUMENT_TOO_LARGE' 'Unique value too large'",
            "c1 -> ECHO_REQ 'still open'",
            "c1 <- ECHO_RES 'still open'",
            "c1 -> SUBMIT_JOB_BG 'f' 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            "c1 -> SUBMIT_JOB_BG 'f' 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww' 'x'",
            "c1 <- JOB_CREATED 'H2'",
            "c1 -> GET_STATUS_UNIQUE 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww'",
            "c1 <- STATUS_RES_UNIQUE 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww' '1' '0' '0' '0' '0'",
            "c1 -> GET_STATUS_UNIQUE 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv'",
            "c1 <- STATUS_RES_UNIQUE 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv' '0' '0' '0' '0' '0'",
            'admin -> show unique jobs\\r\\n',
            'admin <- vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\\nwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww\\n.\\n',
        ),
    ),
    'client_disconnect_drops_queued_job': ExpectedDifference(
        why=(
            'A queued foreground job whose clients all left is removed at once, so `status` ',
            'counts only jobs that will run. gearmand keeps counting it until a worker reaches it ',
            'and discards it then.',
        ),
        gearmand=(
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'c1 closes',
            '-- wait 0.2 s',
            'admin -> status\\r\\n',
            'admin <- f\\t1\\t0\\t0\\n.\\n',
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
        ),
        gearshift=(
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'c1 closes',
            '-- wait 0.2 s',
            'admin -> status\\r\\n',
            'admin <- f\\t0\\t0\\t0\\n.\\n',
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
        ),
    ),
    'admin_cancel_job': ExpectedDifference(
        why=(
            '`cancel job` removes the job at once: a second cancel answers ERR UNKNOWN_JOB and ',
            'the client gets one WORK_FAIL. gearmand marks it ignored, answers OK again and sends ',
            'a second WORK_FAIL, and lists it in `show jobs` until reached.',
        ),
        gearmand=(
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'admin -> cancel job H1\\r\\n',
            'admin <- OK\\r\\n',
            "c1 <- WORK_FAIL 'H1'",
            'admin -> cancel job H1\\r\\n',
            'admin <- OK\\r\\n',
            "c1 <- WORK_FAIL 'H1'",
            'admin -> cancel job no-such-handle\\r\\n',
            'admin <- ERR UNKNOWN_JOB\\r\\n',
            'admin -> cancel job\\r\\n',
            'admin <- ERR UNKNOWN_COMMAND Unknown+server+commandcancel\\r\\n',
            'admin -> cancel job H1 extra\\r\\n',
            'admin <- ERR UNKNOWN_ERROR\\r\\n',
            'c1 <- (nothing)',
            'admin -> show jobs\\r\\n',
            'admin <- H1\\t0\\t1\\t0\\n.\\n',
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
        ),
        gearshift=(
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'admin -> cancel job H1\\r\\n',
            'admin <- OK\\r\\n',
            "c1 <- WORK_FAIL 'H1'",
            'admin -> cancel job H1\\r\\n',
            'admin <- ERR UNKNOWN_JOB\\r\\n',
            'c1 <- (nothing)',
            'admin -> cancel job no-such-handle\\r\\n',
            'admin <- ERR UNKNOWN_JOB\\r\\n',
            'admin -> cancel job\\r\\n',
            'admin <- ERR UNKNOWN_COMMAND Unknown+server+commandcancel\\r\\n',
            'admin -> cancel job H1 extra\\r\\n',
            'admin <- ERR UNKNOWN_ERROR\\r\\n',
            'c1 <- (nothing)',
            'admin -> show jobs\\r\\n',
            'admin <- .\\n',
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
        ),
    ),
    'admin_create_function_bare_newline': ExpectedDifference(
        why=(
            'gearmand computes the name length assuming a CRLF line end, so `create function ',
            'fresh` ended by a bare LF creates `fres`. We take the name as sent.',
        ),
        gearmand=(
            'admin -> create function fresh\\n',
            'admin <- OK\\r\\n',
            'admin -> status\\n',
            'admin <- fres\\t0\\t0\\t0\\n.\\n',
        ),
        gearshift=(
            'admin -> create function fresh\\n',
            'admin <- OK\\r\\n',
            'admin -> status\\n',
            'admin <- fresh\\t0\\t0\\t0\\n.\\n',
        ),
    ),
    'admin_control_characters_in_names': ExpectedDifference(
        why=(
            'gearmand prints names raw, so a name holding a tab and newlines forges `status` ',
            'rows and ends the listing early (sorted here: the forged `.` line comes first). We ',
            'print bytes < 0x20, 0x7f and backslash as \\xNN: one row per function.',
        ),
        gearmand=(
            "c1 -> SUBMIT_JOB_BG 'evil\\t7\\t7\\t7\\n.\\nhidden' '' ''",
            "c1 <- JOB_CREATED 'H1'",
            "c1 -> SUBMIT_JOB_BG 'carriage\\rreturn' '' ''",
            "c1 <- JOB_CREATED 'H2'",
            "c1 -> SUBMIT_JOB_BG 'back\\\\slash' '' ''",
            "c1 <- JOB_CREATED 'H3'",
            "c1 -> SUBMIT_JOB_BG 'plain' '' ''",
            "c1 <- JOB_CREATED 'H4'",
            "admin -> status\\r\\n",
            'admin <- .\\nback\\\\slash\\t1\\t0\\t0\\ncarriage\\revil\\t7\\t7\\t7\\nhidden\\t1\\t0\\t0\\nplain\\t1\\t0\\t0\\nreturn\\t1\\t0\\t0\\n.\\n',
        ),
        gearshift=(
            "c1 -> SUBMIT_JOB_BG 'evil\\t7\\t7\\t7\\n.\\nhidden' '' ''",
            "c1 <- JOB_CREATED 'H1'",
            "c1 -> SUBMIT_JOB_BG 'carriage\\rreturn' '' ''",
            "c1 <- JOB_CREATED 'H2'",
            "c1 -> SUBMIT_JOB_BG 'back\\\\slash' '' ''",
            "c1 <- JOB_CREATED 'H3'",
            "c1 -> SUBMIT_JOB_BG 'plain' '' ''",
            "c1 <- JOB_CREATED 'H4'",
            "admin -> status\\r\\n",
            'admin <- back\\\\x5cslash\\t1\\t0\\t0\\ncarriage\\\\x0dreturn\\t1\\t0\\t0\\nevil\\\\x097\\\\x097\\\\x097\\\\x0a.\\\\x0ahidden\\t1\\t0\\t0\\nplain\\t1\\t0\\t0\\n.\\n',
        ),
    ),
    'foreground_joins_background_then_leaves': ExpectedDifference(
        why=(
            'A foreground client that joins a background job and then leaves does not cancel it: ',
            'the background submitter was told the job exists. gearmand flags the job ignored and ',
            'loses it.',
        ),
        gearmand=(
            "bg -> SUBMIT_JOB_BG 'f' 'shared' 'x'",
            "bg <- JOB_CREATED 'H1'",
            "fg -> SUBMIT_JOB 'f' 'shared' 'x'",
            "fg <- JOB_CREATED 'H1'",
            'fg closes',
            '-- wait 0.2 s',
            'admin -> status\\r\\n',
            'admin <- f\\t1\\t0\\t0\\n.\\n',
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
        ),
        gearshift=(
            "bg -> SUBMIT_JOB_BG 'f' 'shared' 'x'",
            "bg <- JOB_CREATED 'H1'",
            "fg -> SUBMIT_JOB 'f' 'shared' 'x'",
            "fg <- JOB_CREATED 'H1'",
            'fg closes',
            '-- wait 0.2 s',
            'admin -> status\\r\\n',
            'admin <- f\\t1\\t0\\t0\\n.\\n',
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
        ),
    ),
    'drop_function_with_queued_jobs': ExpectedDifference(
        why=(
            '`drop function` refuses while jobs are queued (nothing is lost silently). gearmand ',
            'answers OK and discards the queued jobs.',
        ),
        gearmand=(
            "c1 -> SUBMIT_JOB_BG 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'admin -> drop function f\\r\\n',
            'admin <- OK\\r\\n',
            'admin -> status\\r\\n',
            'admin <- .\\n',
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
        ),
        gearshift=(
            "c1 -> SUBMIT_JOB_BG 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            'admin -> drop function f\\r\\n',
            'admin <- ERR there are still connected workers or executing clients\\r\\n',
            'admin -> status\\r\\n',
            'admin <- f\\t1\\t0\\t0\\n.\\n',
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
        ),
    ),
    'malformed_numbers': ExpectedDifference(
        why=(
            'A non-numeric SUBMIT_JOB_EPOCH time gets ERROR INVALID_ARGUMENT; gearmand reads it ',
            'as 0 and runs the job at once. A non-numeric CAN_DO_TIMEOUT is read as 0 (no ',
            'timeout) by both servers, because npm gearman sends it as binary.',
        ),
        gearmand=(
            "c1 -> SUBMIT_JOB_EPOCH 'f' 'u' 'soon' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            "c1 -> ECHO_REQ 'still open?'",
            "c1 <- ECHO_RES 'still open?'",
            "w1 -> CAN_DO_TIMEOUT 'f' 'later'",
            "w1 -> ECHO_REQ 'still open?'",
            "w1 <- ECHO_RES 'still open?'",
        ),
        gearshift=(
            "c1 -> SUBMIT_JOB_EPOCH 'f' 'u' 'soon' 'x'",
            "c1 <- ERROR 'INVALID_ARGUMENT' 'SUBMIT_JOB_EPOCH time is not an integer'",
            "c1 -> ECHO_REQ 'still open?'",
            "c1 <- ECHO_RES 'still open?'",
            "w1 -> CAN_DO_TIMEOUT 'f' 'later'",
            "w1 -> ECHO_REQ 'still open?'",
            "w1 <- ECHO_RES 'still open?'",
        ),
    ),
    'work_exception': ExpectedDifference(
        why=(
            'A client that did not ask for exceptions gets WORK_FAIL with the bare handle. ',
            "gearmand leaves the exception's NUL separator on (HANDLE\\0), which Perl's ",
            'Gearman::Client and python-gearman cannot match to their task.',
        ),
        gearmand=(
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "c1 -> OPTION_REQ 'exceptions'",
            "c1 <- OPTION_RES 'exceptions'",
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            "c2 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c2 <- JOB_CREATED 'H1'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
            "w1 -> WORK_EXCEPTION 'H1' 'boom'",
            "c1 <- WORK_EXCEPTION 'H1' 'boom'",
            "c2 <- WORK_FAIL 'H1\\x00'",
            "c2 -> GET_STATUS 'H1'",
            "c2 <- STATUS_RES 'H1' '0' '0' '0' '0'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
        ),
        gearshift=(
            "w1 -> CAN_DO 'f'",
            "w1 -> ECHO_REQ 'sync'",
            "w1 <- ECHO_RES 'sync'",
            "c1 -> OPTION_REQ 'exceptions'",
            "c1 <- OPTION_RES 'exceptions'",
            "c1 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c1 <- JOB_CREATED 'H1'",
            "c2 -> SUBMIT_JOB 'f' 'u' 'x'",
            "c2 <- JOB_CREATED 'H1'",
            'w1 -> GRAB_JOB',
            "w1 <- JOB_ASSIGN 'H1' 'f' 'x'",
            "w1 -> WORK_EXCEPTION 'H1' 'boom'",
            "c1 <- WORK_EXCEPTION 'H1' 'boom'",
            "c2 <- WORK_FAIL 'H1'",
            "c2 -> GET_STATUS 'H1'",
            "c2 <- STATUS_RES 'H1' '0' '0' '0' '0'",
            'w1 -> GRAB_JOB',
            'w1 <- NO_JOB',
        ),
    ),
}


def _diff(gearmand: list[str], gearshift: list[str]) -> str:
    return "\n".join(difflib.unified_diff(
        gearmand, gearshift, "gearmand", "gearshift", lineterm="", n=50,
    ))


def _run_both(name: str) -> tuple[list[str], list[str]]:
    scenario = SCENARIOS[name]
    with ThreadPoolExecutor(max_workers=2) as pool:
        reference = pool.submit(run_scenario, "gearmand", scenario)
        ours = pool.submit(run_scenario, "gearshift", scenario)
        return reference.result(), ours.result()


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n not in EXPECTED_DIFFERENCES])
def test_same_replies_as_gearmand(name: str) -> None:
    gearmand, gearshift = _run_both(name)
    assert len(gearmand) > 1, "the scenario recorded nothing"
    if gearshift != gearmand:
        pytest.fail(f"gearshift differs from gearmand in {name!r}:\n{_diff(gearmand, gearshift)}")


@pytest.mark.parametrize("name", sorted(EXPECTED_DIFFERENCES))
def test_documented_difference(name: str) -> None:
    expected = EXPECTED_DIFFERENCES[name]
    gearmand, gearshift = _run_both(name)
    assert gearmand == list(expected.gearmand), (
        f"gearmand no longer behaves as recorded in {name!r}:\n"
        + _diff(list(expected.gearmand), gearmand)
    )
    assert gearshift == list(expected.gearshift), (
        f"gearshift's intended behaviour changed in {name!r}:\n"
        + _diff(list(expected.gearshift), gearshift)
    )


def test_expected_differences_are_real_and_documented() -> None:
    """Every entry names a scenario, really differs, and is explained in the docs."""
    doc = _DOC.read_text(encoding="utf-8")
    for name, expected in EXPECTED_DIFFERENCES.items():
        assert name in SCENARIOS, f"{name!r} is not a scenario"
        assert expected.gearmand != expected.gearshift, f"{name!r} differs in nothing"
        assert expected.why, f"{name!r} has no reason"
        assert f"`{name}`" in doc, f"{name!r} is not mentioned in docs/compatibility.md"


def test_every_scenario_is_listed_in_the_docs() -> None:
    doc = _DOC.read_text(encoding="utf-8")
    missing = [name for name in SCENARIOS if f"`{name}`" not in doc]
    assert not missing, f"scenarios missing from docs/compatibility.md: {missing}"
