"""The notifier: alerts delivered to people, by webhook and e-mail (issue 33; docs/alerts.md).

- ``signing.py``: a webhook's signature headers (Standard Webhooks), and how a receiver checks them.
"""
