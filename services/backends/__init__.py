"""Worker backends: what runs an instance's requests, behind one interface.

``services.worker.WorkerCore`` drives every hosted instance through the same
methods, whatever runs it:

=====================  ==============================================================
``refusal(req)``       why it can never serve ``req`` (None: it may; a real engine says
                       so itself, with status ``rejected``)
``add(req, t)``        start serving ``req`` (arrived at stack time ``t``)
``advance(now)``       the ``RequestRecord``s finished by ``now``
``status(now)``        an ``InstanceStatus`` heartbeat (health included)
``next_event_time()``  when the worker must look again without a new message
``cancel(rid)``        optional: stop serving a request the router moved elsewhere
=====================  ==============================================================

* ``sim`` (``services.backends.sim``): the simulated engine, the default and
  the benchmark's engine.
* ``openai`` (``services.backends.openai``): a real engine over its
  OpenAI-compatible API, one endpoint per hosted instance.
"""

BACKENDS = ("sim", "openai")
