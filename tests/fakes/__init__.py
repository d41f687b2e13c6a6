"""Loopback fakes of third-party services: real servers speaking the real protocol, so production clients run
unchanged against them."""
