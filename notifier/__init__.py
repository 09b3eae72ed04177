"""The notifier: alerts delivered to people, by webhook and e-mail (issue 33; docs/alerts.md).

(a webhook's signature headers, which the API's secrets are made for too: ``locstream/webhook_signing.py``)

- ``backoff.py``: which answers are tried again, and when (exponential backoff with jitter, ``Retry-After``, a
  24-hour window, then a dead letter);
- ``breaker.py``: an endpoint's circuit breaker.
"""
