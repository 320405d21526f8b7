"""`release_free_memory` gives glibc's retained free blocks back to the OS (what the inference engine does after a
burst and after a weight update)."""

from __future__ import annotations

import psutil
import torch

from prime_rl.utils.memory import release_free_memory

MIB = 1024**2


def test_freed_blocks_below_the_mmap_threshold_are_returned_to_the_os():
    rss = psutil.Process().memory_info
    # Freeing a 30 MiB block raises glibc's mmap threshold to 30 MiB, so the 4 MiB blocks after it come from the heap.
    del_me = torch.ones(30 * MIB // 4)
    del del_me
    blocks = [torch.ones(MIB) for _ in range(64)]  # 64 x 4 MiB
    held = rss().rss
    del blocks
    assert release_free_memory() is True
    assert held - rss().rss > 200 * MIB
