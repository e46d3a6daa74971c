"""One generation at a time: a first-come-first-served queue of jobs, the running job's progress, interruption.

`/sdapi/v1/progress` reads `JobQueue.progress()` (A1111's ProgressResponse shape, its `state` being A1111's
`shared.state.dict()`); `/sdapi/v1/interrupt` calls `JobQueue.interrupt()`, which stops the running job at its
next sampling step (its images come back as they are then, as in A1111). With a task id (the request's
`force_task_id`, or the `task_id` its answer carried) it interrupts that job instead, also while it still
waits: a waiting job leaves the queue at once and its request fails with `JobCancelled`, having generated
nothing. Preprocessor previews (/controlnet/detect) never enter the queue.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..request import StepProgress

_ids = itertools.count(1)


class JobCancelled(Exception):
    """The job was interrupted while it waited for its turn."""

    def __init__(self, job: Job):
        super().__init__(f"{job.task_id} was interrupted while it waited in the queue; nothing was generated")
        self.job = job


@dataclass(eq=False)
class Job:
    kind: str  # "txt2img" / "img2img"
    task_id: str = ""
    interrupt: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    timestamp: str = ""
    step: int = 0
    steps: int = 0
    batch: int = 0
    batches: int = 1

    def __post_init__(self):
        if not self.task_id:
            self.task_id = f"task({self.kind}-{next(_ids)})"

    def on_step(self, progress: StepProgress) -> None:
        self.step, self.steps = progress.step, progress.steps
        self.batch, self.batches = progress.batch, progress.batches


class JobQueue:
    def __init__(self):
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self.last_interrupted = False

    @contextmanager
    def turn(self, job: Job) -> Iterator[Job]:
        """Wait until every job queued before this one has finished, then hold the generator."""
        with self._cond:
            self._waiting.append(job)
            while not job.interrupt.is_set() and (self._running is not None or self._waiting[0] is not job):
                self._cond.wait()
            self._waiting.remove(job)
            if job.interrupt.is_set():
                self._cond.notify_all()  # the job behind it may be first now
                raise JobCancelled(job)
            self._running = job
            job.started_at = time.time()
            job.timestamp = time.strftime("%Y%m%d%H%M%S")
        try:
            yield job
        finally:
            with self._cond:
                self._running = None
                self.last_interrupted = job.interrupt.is_set()
                self._cond.notify_all()

    def interrupt(self, task_id: str | None = None) -> bool:
        """Stop the running job at its next step, or the job `task_id` whether it runs or waits. False when
        there is no such job."""
        with self._cond:
            if task_id is None:
                job = self._running
            else:
                job = next((j for j in (self._running, *self._waiting) if j is not None and j.task_id == task_id),
                           None)
            if job is None:
                return False
            job.interrupt.set()
            self._cond.notify_all()  # a waiting job wakes up to leave the queue
            return True

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._waiting)

    @property
    def running(self) -> Job | None:
        with self._cond:
            return self._running

    def progress(self, notice: str | None = None) -> dict:
        """A1111's /sdapi/v1/progress body."""
        with self._cond:
            job, pending = self._running, len(self._waiting)
        waiting = f"{pending} request(s) waiting" if pending else ""
        textinfo = " ".join(t for t in (notice or "", waiting) if t) or None
        if job is None:
            state = _state(None, interrupted=self.last_interrupted)
            return {"progress": 0, "eta_relative": 0, "state": state, "current_image": None, "textinfo": textinfo}
        batches = max(job.batches, 1)
        progress = 0.01 + job.batch / batches + (job.step / job.steps / batches if job.steps else 0)
        elapsed = time.time() - (job.started_at or time.time())
        eta = elapsed / progress - elapsed
        return {"progress": min(progress, 1.0), "eta_relative": eta, "state": _state(job),
                "current_image": None, "textinfo": textinfo}


def _state(job: Job | None, *, interrupted: bool = False) -> dict:
    """A1111's `shared.state.dict()`."""
    if job is None:
        return {"skipped": False, "interrupted": interrupted, "stopping_generation": False, "job": "",
                "job_count": 0, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
    return {"skipped": False, "interrupted": job.interrupt.is_set(), "stopping_generation": False,
            "job": f"scripts_{job.kind}", "job_count": job.batches, "job_timestamp": job.timestamp,
            "job_no": job.batch, "sampling_step": job.step, "sampling_steps": job.steps}
