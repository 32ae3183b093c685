"""Ending the private asyncio event loops of the XMPP clients."""

import asyncio


def close_event_loop(loop):
    """Cancel the tasks still pending on ``loop`` (this thread's current
    loop), let them finish, and close it: slixmpp leaves tasks behind, and
    would otherwise try to cancel them later, from its destructor, on a
    closed loop."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    asyncio.set_event_loop(None)
    loop.close()
