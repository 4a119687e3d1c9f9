"""Transport backends of :class:`~ste_opt.learning_hooks.trainer.SplitFedTrainer`.

A backend carries the bytes of the roles (:mod:`ste_opt.learning_hooks.client_roles`,
:mod:`ste_opt.learning_hooks.server_role`: framed payloads, gradient frames, adapter dicts) and
implements the one :class:`~ste_opt.learning_hooks.backends.base.Backend` protocol, usually through
the template round loop :class:`~ste_opt.learning_hooks.backends.base.RoundTemplate`.

- ``base``            ``Backend``, ``RoundJob``, ``RoundTemplate``, ``attach_server_copies``
- ``registry``        ``get_backend(name)``
- ``local``           :class:`LocalBackend`: the roles in this process (the reference order)
- ``ray_backend``     :class:`RayBackend`: client-worker actors and one server actor (Ray;
  the actors are in ``ray_actors``)
- ``flower_backend``  :class:`FlowerBackend`: a Flower ServerApp drives the exchanges
  (``flower_protocol``, ``flower_client``, ``flower_server``; simulation engine in-process, or a
  deployed SuperLink + SuperNodes via ``learning_hooks/flower_app``)

Nothing here is imported eagerly: Ray and Flower load only when a backend is built.
"""
