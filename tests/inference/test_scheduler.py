"""The engine's slot scheduler with a fake model: supersession, fairness, affinity, hot swap."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from inference.engine.result import EngineChoice, EngineResult
from inference.engine.scheduler import Job, Pool, Scheduler


class FakeCompleter:
    def __init__(self, name: str):
        self.name = name
        self.closed = False


def _run(completer, job):
    """Generates `steps` tokens of 10 ms each (counted in `body["made"]`), stopping between tokens
    when cancelled; first waits for `body["hold"]`, an event, when there is one."""
    if "hold" in job.body:
        job.body["hold"].wait(timeout=30)
    for _ in range(job.body.get("steps", 3)):
        if job.cancel.is_set():
            return EngineResult(choices=(EngineChoice(0, "", "cancelled"),), superseded=True)
        job.body["made"] = job.body.get("made", 0) + 1
        time.sleep(0.01)
    return EngineResult(choices=(EngineChoice(0, job.body.get("text", "ok"), "stop"),))


def _pool(name: str, slots: int) -> Pool:
    completers = [FakeCompleter(f"{name}-{i}") for i in range(slots)]

    def close():
        for completer in completers:
            completer.closed = True

    return Pool(SimpleNamespace(id=name, version_pk=None), completers, 0.0, on_close=close)


def test_newer_request_from_same_token_supersedes_the_running_one():
    s = Scheduler(slots=1, run=_run)
    s.swap(_pool("m", 1))
    old = s.submit(Job(user="alice", body={"steps": 100}))
    time.sleep(0.03)
    new = s.submit(Job(user="alice", body={"steps": 2, "text": "fresh"}))
    made = old.body.get("made", 0)  # the supersession is marked before submit returns
    assert s.wait(old).superseded is True
    assert old.body["made"] <= made + 1 < 100  # cancelled at the next token, not after 100 of them
    assert s.wait(new).choices[0].text == "fresh"
    assert s.snapshot()["superseded"] == 1
    s.close()


def test_superseding_a_queued_request_keeps_its_place_and_other_users_keep_theirs():
    s = Scheduler(slots=1, run=_run)
    s.swap(_pool("m", 1))
    order = []
    blocker = s.submit(Job(user="carol", body={"steps": 5}))
    bob = s.submit(Job(user="bob", body={"steps": 1, "text": "bob"}))
    alice1 = s.submit(Job(user="alice", body={"steps": 1, "text": "a1"}))
    dave = s.submit(Job(user="dave", body={"steps": 1, "text": "dave"}))
    alice2 = s.submit(Job(user="alice", body={"steps": 1, "text": "a2"}))
    assert s.wait(alice1).superseded is True  # answered at once, never ran
    for job in (blocker, bob, alice2, dave):
        order.append(s.wait(job).choices[0].text)
        # completion order is submission order: alice's newer job took her older job's place
    assert list(s.queue) == []
    assert [j.done.is_set() for j in (bob, alice2, dave)] == [True, True, True]
    assert bob.result.slot == alice2.result.slot == 0
    s.close()


def test_a_user_goes_back_to_the_slot_holding_their_cache():
    s = Scheduler(slots=2, run=_run)
    s.swap(_pool("m", 2))
    first = s.wait(s.submit(Job(user="alice", body={"steps": 1})))
    for _ in range(4):
        again = s.wait(s.submit(Job(user="alice", body={"steps": 1})))
        assert again.slot == first.slot
    s.close()


def test_a_new_user_takes_a_slot_holding_no_cache_before_evicting_someone_elses():
    s = Scheduler(slots=3, run=_run)
    s.swap(_pool("m", 3))
    alice = s.wait(s.submit(Job(user="alice", body={"steps": 1}))).slot
    bob = s.wait(s.submit(Job(user="bob", body={"steps": 1}))).slot
    carol = s.wait(s.submit(Job(user="carol", body={"steps": 1}))).slot
    assert len({alice, bob, carol}) == 3  # each opened on a slot of their own
    dave = s.wait(s.submit(Job(user="dave", body={"steps": 1}))).slot
    assert dave == alice  # no empty slot left: the least recently used one
    # Alice's slot is Dave's now: she has no slot of her own and does not take his back from him.
    assert s.wait(s.submit(Job(user="alice", body={"steps": 1}))).slot == bob
    s.close()


def test_hot_swap_under_load_fails_nothing_and_closes_the_old_model():
    s = Scheduler(slots=2, run=_run)
    old = _pool("old", 2)
    old_slots = list(old.completers)
    s.swap(old)
    results, errors = [], []

    def client(n: int):
        for _ in range(10):
            try:
                results.append(s.wait(s.submit(Job(user=f"u{n}", body={"steps": 2}))).model)
            except Exception as exc:  # noqa: BLE001 - counted, the assertion below names it
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    s.swap(_pool("new", 2))
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 60
    assert {"old", "new"} <= set(results)
    assert all(c.closed for c in old_slots) and old.completers == []
    s.close()


def test_run_runs_the_job_in_the_thread_that_sent_it():
    ran_in = []

    def run(completer, job):
        ran_in.append(threading.get_ident())
        return EngineResult(choices=(EngineChoice(0, "", "stop"),))

    s = Scheduler(slots=2, run=run)
    s.swap(_pool("m", 2))
    s.run(Job(user="alice", body={}), timeout=5)
    assert ran_in == [threading.get_ident()]
    s.close()


def test_run_waits_for_a_busy_slot_and_a_newer_keystroke_answers_the_queued_one_at_once():
    s = Scheduler(slots=1, run=_run)
    s.swap(_pool("m", 1))
    blocker = s.submit(Job(user="carol", body={"steps": 20}))
    answers = {}

    def typist(name: str, body: dict) -> None:
        answers[name] = s.run(Job(user="alice", body=body), timeout=5)

    first = threading.Thread(target=typist, args=("first", {"steps": 1, "text": "a1"}))
    first.start()
    time.sleep(0.05)  # queued behind carol
    second = threading.Thread(target=typist, args=("second", {"steps": 1, "text": "a2"}))
    second.start()
    first.join(timeout=5)
    assert answers["first"].superseded is True and not blocker.done.is_set()  # answered, never ran
    second.join(timeout=5)
    assert answers["second"].choices[0].text == "a2"
    assert s.wait(blocker).choices[0].text == "ok"
    s.close()


def test_run_gives_up_on_a_slot_after_its_timeout_and_leaves_the_queue_working():
    s = Scheduler(slots=1, run=_run)
    s.swap(_pool("m", 1))
    hold = threading.Event()
    blocker = s.submit(Job(user="carol", body={"steps": 30, "hold": hold}))  # the slot, until released
    late = Job(user="alice", body={"steps": 1})
    try:
        s.run(late, timeout=0.05)
    except Exception as exc:  # noqa: BLE001 - the assertion names it
        assert "did not answer in time" in str(exc)
    else:
        raise AssertionError("a job that never got a slot did not time out")
    # Given up on its own timeout while the slot was still taken, not when the slot came free.
    assert not blocker.done.is_set() and list(s.queue) == [] and late.done.is_set()
    hold.set()
    s.wait(blocker, timeout=5)
    assert s.run(Job(user="alice", body={"steps": 1, "text": "again"}), timeout=5).choices[0].text == "again"
    s.close()


def test_a_job_wakes_only_the_slot_worker_it_is_handed_to(monkeypatch):
    """Eight idle workers, one job: the others sleep on (no thundering herd on a busy CPU)."""
    import inference.engine.scheduler as scheduler_module

    woken = []

    class Counting(threading.Condition):
        def wait(self, timeout=None):
            result = super().wait(timeout)
            if threading.current_thread().name.startswith("slot-"):
                woken.append(threading.current_thread().name)
            return result

    monkeypatch.setattr(scheduler_module.threading, "Condition", Counting)
    s = Scheduler(slots=8, run=_run)
    s.swap(_pool("m", 8))
    time.sleep(0.05)  # every worker is asleep on its own condition by now
    woken.clear()
    s.wait(s.submit(Job(user="alice", body={"steps": 1})), timeout=5)
    assert len(woken) == 1, woken
    s.close()
