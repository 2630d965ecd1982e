"""SASL and TLS settings for every Kafka client phaser makes, from ``PHASER_KAFKA_*``.

One function, ``client_options()``, returns the keyword arguments every
aiokafka producer, consumer and admin client is built with
(``services.kafka``, ``services.monitor``). The services inherit the
environment, so setting these once (shell, compose file, ``phaser up``'s
children) secures the whole stack:

==================================  ===============================================
``PHASER_KAFKA_SECURITY_PROTOCOL``  ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``
``PHASER_KAFKA_SASL_MECHANISM``     ``PLAIN`` (default with SASL), ``SCRAM-SHA-256``, ``SCRAM-SHA-512``
``PHASER_KAFKA_SASL_USERNAME``      SASL user
``PHASER_KAFKA_SASL_PASSWORD``      SASL password (never printed: ``describe()`` masks it)
``PHASER_KAFKA_SSL_CAFILE``         CA bundle that signed the broker's certificate
``PHASER_KAFKA_SSL_CERTFILE``       client certificate (mutual TLS), optional
``PHASER_KAFKA_SSL_KEYFILE``        its private key, optional
``PHASER_KAFKA_SSL_CHECK_HOSTNAME`` ``1`` (default) or ``0``
==================================  ===============================================

A wrong value is a ``PhaserError`` naming the variable (exit 2), never a
traceback; the password appears nowhere in messages, logs or ``--json``.
"""

from __future__ import annotations

import os
from functools import lru_cache

from phaser.errors import PhaserError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENV = ("PHASER_KAFKA_SECURITY_PROTOCOL", "PHASER_KAFKA_SASL_MECHANISM", "PHASER_KAFKA_SASL_USERNAME",
       "PHASER_KAFKA_SASL_PASSWORD", "PHASER_KAFKA_SSL_CAFILE", "PHASER_KAFKA_SSL_CERTFILE", "PHASER_KAFKA_SSL_KEYFILE",
       "PHASER_KAFKA_SSL_CHECK_HOSTNAME")


def _env() -> tuple:
    return tuple(os.environ.get(k, "") for k in ENV)


def client_options() -> dict:
    """aiokafka keyword arguments for the current environment (see module docstring)."""
    return dict(_options(_env()))


@lru_cache(maxsize=8)
def _options(env: tuple) -> tuple:
    proto, mech, user, password, cafile, certfile, keyfile, check = env
    proto = (proto or "PLAINTEXT").upper()
    if proto not in PROTOCOLS:
        raise PhaserError(f"PHASER_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, got {proto!r}")
    out: dict = {"security_protocol": proto}
    if proto.startswith("SASL"):
        mech = (mech or "PLAIN").upper()
        if mech not in MECHANISMS:
            raise PhaserError(f"PHASER_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, got {mech!r}")
        if not user or not password:
            raise PhaserError(f"{proto} needs PHASER_KAFKA_SASL_USERNAME and PHASER_KAFKA_SASL_PASSWORD")
        out.update(sasl_mechanism=mech, sasl_plain_username=user, sasl_plain_password=password)
    elif mech or user or password:
        raise PhaserError(f"PHASER_KAFKA_SASL_* is set but PHASER_KAFKA_SECURITY_PROTOCOL is {proto}; use SASL_SSL or SASL_PLAINTEXT")
    if proto.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        for name, path in (("CAFILE", cafile), ("CERTFILE", certfile), ("KEYFILE", keyfile)):
            if path and not os.path.isfile(path):
                raise PhaserError(f"PHASER_KAFKA_SSL_{name}: no such file {path}")
        if bool(certfile) != bool(keyfile):
            raise PhaserError("PHASER_KAFKA_SSL_CERTFILE and PHASER_KAFKA_SSL_KEYFILE go together")
        if check not in ("", "0", "1"):
            raise PhaserError(f"PHASER_KAFKA_SSL_CHECK_HOSTNAME must be 0 or 1, got {check!r}")
        try:
            ctx = create_ssl_context(cafile=cafile or None, certfile=certfile or None, keyfile=keyfile or None)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise PhaserError(f"PHASER_KAFKA_SSL_*: cannot load the certificates: {e}") from None
        ctx.check_hostname = check != "0"
        out["ssl_context"] = ctx
    elif cafile or certfile or keyfile:
        raise PhaserError(f"PHASER_KAFKA_SSL_* is set but PHASER_KAFKA_SECURITY_PROTOCOL is {proto}; use SSL or SASL_SSL")
    return tuple(out.items())


def describe() -> dict:
    """The settings in effect, safe to print or write to JSON (the password is masked)."""
    opts = client_options()
    out = {"security_protocol": opts["security_protocol"]}
    if "sasl_mechanism" in opts:
        out.update(sasl_mechanism=opts["sasl_mechanism"], sasl_username=opts["sasl_plain_username"], sasl_password="***")
    if "ssl_context" in opts:
        out["ssl_cafile"] = os.environ.get("PHASER_KAFKA_SSL_CAFILE", "") or "(system)"
    return out
