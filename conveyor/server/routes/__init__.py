"""The API's routes, one ``APIRouter`` per concern; :func:`~conveyor.server.api.create_api`
includes them, the protected ones with :data:`~conveyor.server.state.PROTECTED`.

``documents`` (uploads, listing, one document), ``search``, ``queue`` (depth, dead
letters, the status page's data), ``events`` (server-sent events and their tokens),
``health`` (``/health`` and ``/metrics``) and ``page`` (the status page itself).
"""
