"""The notifier: alerts delivered to people, by webhook and e-mail (issue 33; docs/alerts.md).

- ``signing.py``: a webhook's signature headers (Standard Webhooks), and how a receiver checks them;
- ``backoff.py``: which answers are tried again, and when (exponential backoff with jitter, ``Retry-After``, a
  24-hour window, then a dead letter);
- ``breaker.py``: an endpoint's circuit breaker.
"""
