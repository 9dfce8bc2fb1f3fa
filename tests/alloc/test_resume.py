"""A decorated generator, coroutine or async generator runs inside its context
manager at every resumption (numa_numpy._alloc.resume), for the NumPy scopes and
the OS thread's state alike.

CPU affinity and the task policy belong to the OS thread: a decorated body must
see them at every resumption (read back from the kernel), and the code that runs
between resumptions (the caller, or other asyncio tasks on the same thread) must
see the thread's own state."""

import os

import numpy as np
import pytest

import numa_numpy as nn


def test_decorated_generator_runs_inside_the_scope_at_every_resumption(handler_name):
    seen = []

    @nn.on_node(0)
    def gen(n):
        try:
            for i in range(n):
                got = yield nn.current_policy(), handler_name(np.ones(8))
                seen.append((got, nn.current_policy()))
            return "done"
        finally:
            seen.append(("finally", nn.current_policy()))

    g = gen(2)
    assert nn.current_policy() is None  # creating it enters nothing
    assert next(g) == (nn.Bind(0), "numa_numpy")
    assert nn.current_policy() is None and handler_name() == "default_allocator"
    with nn.interleaved():  # the caller's scope does not reach into the body
        assert g.send("a") == (nn.Bind(0), "numa_numpy")
        assert nn.current_policy() == nn.Interleave()
    with pytest.raises(StopIteration) as stop:
        g.send("b")
    assert stop.value.value == "done"
    assert seen == [("a", nn.Bind(0)), ("b", nn.Bind(0)), ("finally", nn.Bind(0))]
    assert gen.__name__ == "gen"

    # throw() and close() run the body inside the scope too
    g = gen(5)
    next(g)
    with pytest.raises(KeyError):
        g.throw(KeyError("x"))
    assert seen[-1] == ("finally", nn.Bind(0)) and nn.current_policy() is None
    g = gen(5)
    next(g)
    seen.clear()
    g.close()
    assert seen == [("finally", nn.Bind(0))] and nn.current_policy() is None
    assert list(gen(3)) == [(nn.Bind(0), "numa_numpy")] * 3


def test_decorated_generator_can_catch_a_thrown_exception():
    @nn.interleaved()
    def gen():
        while True:
            try:
                yield nn.current_policy()
            except ValueError:
                yield "caught", nn.current_policy()

    g = gen()
    next(g)
    assert g.throw(ValueError()) == ("caught", nn.Interleave())
    assert nn.current_policy() is None
    g.close()


def test_decorated_async_generator_runs_inside_the_scope_at_every_resumption(handler_name):
    import asyncio

    seen = []

    @nn.on_node(0)
    async def agen(n):
        try:
            for _ in range(n):
                await asyncio.sleep(0)
                got = yield nn.current_policy(), handler_name(np.ones(8))
                seen.append((got, nn.current_policy()))
        finally:
            seen.append(("finally", nn.current_policy()))

    async def main():
        g = agen(2)
        assert await g.__anext__() == (nn.Bind(0), "numa_numpy")
        assert nn.current_policy() is None
        with nn.interleaved():
            assert await g.asend("a") == (nn.Bind(0), "numa_numpy")
            assert nn.current_policy() == nn.Interleave()
        with pytest.raises(StopAsyncIteration):
            await g.asend("b")
        assert [x async for x in agen(2)] == [(nn.Bind(0), "numa_numpy")] * 2
        g = agen(3)
        await g.__anext__()
        await g.aclose()
        assert seen[-1] == ("finally", nn.Bind(0))
        g = agen(3)
        await g.__anext__()
        with pytest.raises(KeyError):
            await g.athrow(KeyError("x"))
        assert nn.current_policy() is None
        return True

    assert asyncio.run(main())
    assert seen[:3] == [("a", nn.Bind(0)), ("b", nn.Bind(0)), ("finally", nn.Bind(0))]
    assert nn.current_policy() is None


def _one_cpu():
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        pytest.skip("needs two CPUs: pinning to one must be observable")
    return min(before), before


def test_pinned_generator_runs_pinned_at_every_resumption_and_unpinned_between():
    cpu, before = _one_cpu()
    seen = []

    @nn.pinned(cpus=[cpu])
    def gen(n):
        try:
            for _ in range(n):
                got = yield os.sched_getaffinity(0)
                seen.append((got, os.sched_getaffinity(0)))
            return "done"
        finally:
            seen.append(("finally", os.sched_getaffinity(0)))

    g = gen(2)
    assert os.sched_getaffinity(0) == before
    assert next(g) == {cpu}
    assert os.sched_getaffinity(0) == before  # not leaked onto the caller
    assert g.send("a") == {cpu}
    assert os.sched_getaffinity(0) == before
    with pytest.raises(StopIteration) as stop:
        g.send("b")
    assert stop.value.value == "done"
    assert seen == [("a", {cpu}), ("b", {cpu}), ("finally", {cpu})]
    assert os.sched_getaffinity(0) == before
    assert gen.__name__ == "gen"
    assert list(gen(3)) == [{cpu}] * 3


def test_pinned_generator_throw_and_close_run_pinned_and_restore():
    cpu, before = _one_cpu()
    seen = []

    @nn.pinned(cpus=[cpu])
    def gen():
        try:
            while True:
                try:
                    yield os.sched_getaffinity(0)
                except ValueError:
                    yield "caught", os.sched_getaffinity(0)
        finally:
            seen.append(os.sched_getaffinity(0))

    g = gen()
    next(g)
    assert g.throw(ValueError()) == ("caught", {cpu})  # caught inside, pinned
    assert os.sched_getaffinity(0) == before
    with pytest.raises(KeyError):  # not caught: the generator ends, pinned to the end
        g.throw(KeyError("x"))
    assert seen == [{cpu}] and os.sched_getaffinity(0) == before
    g = gen()
    next(g)
    g.close()  # the finally block runs pinned, and the caller is unpinned after
    assert seen == [{cpu}, {cpu}] and os.sched_getaffinity(0) == before


def test_thread_policy_generator_at_every_resumption_and_default_between():
    seen = []

    @nn.thread_policy("bind:0")
    def gen():
        try:
            got = yield nn.get_thread_policy()
            seen.append((got, nn.get_thread_policy()))
            try:
                yield nn.get_thread_policy()
            except ValueError:
                seen.append(("caught", nn.get_thread_policy()))
            yield nn.get_thread_policy()
        finally:
            seen.append(("finally", nn.get_thread_policy()))

    g = gen()
    assert next(g) == nn.Bind(0)
    assert nn.get_thread_policy() == nn.Default()
    with nn.thread_policy(nn.Preferred(0)):  # the caller's own policy, kept between
        assert g.send("a") == nn.Bind(0)
        assert nn.get_thread_policy() == nn.Preferred(0)
    assert g.throw(ValueError()) == nn.Bind(0)
    assert nn.get_thread_policy() == nn.Default()
    g.close()
    assert seen == [("a", nn.Bind(0)), ("caught", nn.Bind(0)), ("finally", nn.Bind(0))]
    assert nn.get_thread_policy() == nn.Default()


def test_pinned_coroutine_each_step_pinned_other_tasks_see_the_thread_unpinned():
    import asyncio

    cpu, before = _one_cpu()

    @nn.pinned(cpus=[cpu])
    async def work(go, waiting):
        steps = [os.sched_getaffinity(0)]
        waiting.set()
        await go.wait()  # other tasks run on this thread meanwhile
        steps.append(os.sched_getaffinity(0))
        await asyncio.sleep(0)
        steps.append(os.sched_getaffinity(0))
        return steps

    async def other(go, waiting):
        await waiting.wait()
        seen = os.sched_getaffinity(0)  # while work() is suspended at an await
        go.set()
        return seen

    async def main():
        go, waiting = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(work(go, waiting), other(go, waiting))

    steps, other_saw = asyncio.run(main())
    assert steps == [{cpu}] * 3
    assert other_saw == before
    assert os.sched_getaffinity(0) == before
    assert work.__name__ == "work"


def test_thread_policy_coroutine_each_step_other_tasks_see_the_default_policy():
    import asyncio

    @nn.thread_policy("bind:0")
    async def work(go, waiting):
        steps = [nn.get_thread_policy()]
        waiting.set()
        await go.wait()
        steps.append(nn.get_thread_policy())
        return steps

    async def other(go, waiting):
        await waiting.wait()
        seen = nn.get_thread_policy()
        go.set()
        return seen

    async def main():
        go, waiting = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(work(go, waiting), other(go, waiting))

    steps, other_saw = asyncio.run(main())
    assert steps == [nn.Bind(0), nn.Bind(0)]
    assert other_saw == nn.Default()
    assert nn.get_thread_policy() == nn.Default()


def test_thread_state_coroutine_cancelled_and_failing_restore_the_thread():
    import asyncio

    cpu, before = _one_cpu()
    seen = []

    @nn.pinned(cpus=[cpu])
    @nn.thread_policy("bind:0")
    async def work(waiting):
        try:
            waiting.set()
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # thrown in at the await: handled pinned
            seen.append((os.sched_getaffinity(0), nn.get_thread_policy()))
            await asyncio.sleep(0)
            seen.append((os.sched_getaffinity(0), nn.get_thread_policy()))
            raise

    @nn.pinned(cpus=[cpu])
    async def fail():
        await asyncio.sleep(0)
        raise KeyError("x")

    async def main():
        waiting = asyncio.Event()
        task = asyncio.create_task(work(waiting))
        await waiting.wait()
        between = (os.sched_getaffinity(0), nn.get_thread_policy())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(KeyError):
            await fail()
        return between

    between = asyncio.run(main())
    assert between == (before, nn.Default())
    assert seen == [({cpu}, nn.Bind(0))] * 2
    assert os.sched_getaffinity(0) == before
    assert nn.get_thread_policy() == nn.Default()


def test_thread_state_async_generator_each_step_other_tasks_see_the_original():
    import asyncio

    cpu, before = _one_cpu()
    seen = []

    @nn.pinned(cpus=[cpu])
    @nn.thread_policy("bind:0")
    async def agen(go, waiting):
        try:
            while True:
                here = (os.sched_getaffinity(0), nn.get_thread_policy())
                waiting.set()
                await go.wait()  # inside a resumption, other tasks run
                go.clear()
                try:
                    got = yield here, (os.sched_getaffinity(0), nn.get_thread_policy())
                except ValueError:
                    got = "caught"
                seen.append((got, os.sched_getaffinity(0), nn.get_thread_policy()))
        finally:
            seen.append(("finally", os.sched_getaffinity(0), nn.get_thread_policy()))

    async def other(go, waiting, n):
        saw = []
        for _ in range(n):
            await waiting.wait()
            waiting.clear()
            saw.append((os.sched_getaffinity(0), nn.get_thread_policy()))
            go.set()
        return saw

    inside = ({cpu}, nn.Bind(0))
    original = (before, nn.Default())

    async def main():
        go, waiting = asyncio.Event(), asyncio.Event()
        watcher = asyncio.create_task(other(go, waiting, 3))
        g = agen(go, waiting)
        got = [await g.__anext__()]
        assert (os.sched_getaffinity(0), nn.get_thread_policy()) == original
        got.append(await g.asend("a"))
        got.append(await g.athrow(ValueError()))
        assert (os.sched_getaffinity(0), nn.get_thread_policy()) == original
        await g.aclose()
        return got, await watcher

    got, saw = asyncio.run(main())
    assert got == [(inside, inside)] * 3
    assert saw == [original] * 3
    assert seen == [("a", *inside), ("caught", *inside), ("finally", *inside)]
    assert (os.sched_getaffinity(0), nn.get_thread_policy()) == original


def test_scope_with_thread_decorating_a_coroutine_keeps_the_thread_policy_per_step():
    import asyncio

    @nn.on_node(0, thread=True)
    async def work(go, waiting):
        steps = [(nn.get_thread_policy(), nn.current_policy())]
        waiting.set()
        await go.wait()
        with nn.interleaved():  # a NumPy scope held across an await: per task, fine
            await asyncio.sleep(0)
            inner = nn.current_policy()
        steps.append((nn.get_thread_policy(), nn.current_policy()))
        return steps, inner

    async def other(go, waiting):
        await waiting.wait()
        seen = (nn.get_thread_policy(), nn.current_policy())
        go.set()
        return seen

    async def main():
        go, waiting = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(work(go, waiting), other(go, waiting))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (steps, inner), other_saw = asyncio.run(main())
    assert steps == [(nn.Bind(0), nn.Bind(0))] * 2
    assert inner == nn.Interleave()
    assert other_saw == (nn.Default(), None)
    assert nn.get_thread_policy() == nn.Default()
