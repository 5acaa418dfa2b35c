"""Django's built-in middleware, run as one synchronous group instead of a thread hop each.

In an async (ASGI) stack each ``MiddlewareMixin`` middleware runs its ``process_request`` and
``process_response`` through ``sync_to_async``: a hand-off to the request's thread and back, twice
per middleware. With session, auth, bearer token, CSRF, messages and the security headers that is
a dozen hops per request, the largest part of a small request's CPU after the database (profiled
with py-spy under 50 clients). Marked sync-only, consecutive middleware run in one thread in one
go: Django adapts once on the way in and once to reach the async view.

The classes are marked in place (``CoreConfig.ready``, before the handler loads them), not
subclassed: Django's deploy checks (HSTS, SSL redirect, nosniff, CSRF, X-Frame-Options) look for
the built-in paths in MIDDLEWARE and must keep seeing them.
"""

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware

SYNC_GROUP = (SecurityMiddleware, SessionMiddleware, CommonMiddleware, AuthenticationMiddleware, CsrfViewMiddleware,
              MessageMiddleware, XFrameOptionsMiddleware)


def run_as_one_sync_group() -> None:
    for middleware in SYNC_GROUP:
        middleware.async_capable = False
