"""WhiteNoise for /static/ without costing every other request a thread switch.

WhiteNoise's middleware is sync-only: placed in Django's async stack it makes every request
(GraphQL included) hop to a thread and back. This wrapper keeps the stack async and asks
WhiteNoise only for paths under STATIC_URL.
"""

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.utils.decorators import sync_and_async_middleware
from whitenoise.middleware import WhiteNoiseMiddleware


@sync_and_async_middleware
def static_files(get_response):
    whitenoise = WhiteNoiseMiddleware(get_response)
    if not iscoroutinefunction(get_response):
        return whitenoise

    def find(request):
        path = request.path_info
        static_file = whitenoise.find_file(path) if whitenoise.autorefresh else whitenoise.files.get(path)
        return whitenoise.serve(static_file, request) if static_file is not None else None

    lookup = sync_to_async(find, thread_sensitive=False)

    async def middleware(request):
        if request.path_info.startswith(whitenoise.static_prefix):
            response = await lookup(request)
            if response is not None:
                return response
        return await get_response(request)

    return middleware
