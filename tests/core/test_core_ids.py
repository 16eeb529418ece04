"""Id sources: random ids are valid, distinct version-4 UUIDs, also across threads and forks."""

from __future__ import annotations

import os
import threading
import uuid

from tradehall.core.ids import RandomIds, SequentialIds, is_uuid


def test_random_ids_are_distinct_version_4_uuids() -> None:
    source = RandomIds()
    ids = [source.new_id() for _ in range(2000)]  # several batches
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text and is_uuid(text)


def test_threads_sharing_a_source_never_get_the_same_id() -> None:
    source = RandomIds()
    results: list[list[str]] = [[] for _ in range(4)]

    def draw(out: list[str]) -> None:
        out.extend(source.new_id() for _ in range(3000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in results for i in out]
    assert len(set(everything)) == len(everything) == 12000


def test_a_forked_child_does_not_reuse_the_parents_batch() -> None:
    source = RandomIds()
    source.new_id()  # the parent now holds a partly used batch
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, source.new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert is_uuid(child)
    assert child != source.new_id()


def test_sequential_ids_keep_their_format() -> None:
    assert SequentialIds().new_id() == "00000000-0000-4000-8000-000000000001"
    assert SequentialIds(start=255, prefix=3).new_id() == "00000003-0000-4000-8000-0000000000ff"
