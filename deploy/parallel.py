"""Run one function per host at once; keep results (or the exception) in host order."""
from concurrent.futures import ThreadPoolExecutor


def each(function, items, limit=None):
    """[(item, result, exception)] in the order of items; at most `limit` at once."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(len(items), limit or len(items))) as pool:
        futures = [pool.submit(function, item) for item in items]
    out = []
    for item, future in zip(items, futures):
        error = future.exception()
        out.append((item, None if error else future.result(), error))
    return out
