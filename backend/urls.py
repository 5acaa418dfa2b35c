from django.contrib import admin
from django.urls import path

from backend.core.health import healthz, livez
from backend.core.metrics import metrics_view
from backend.core.media import avatar
from backend.documents.views import download, export_collection
from backend.users.views import export_my_data
from backend.schema import schema
from backend.schema.views import GraphQLView, graphql_ide

handler500 = "backend.core.unavailable.server_error"

urlpatterns = [
    path("graphql/", GraphQLView.as_view(schema=schema, graphql_ide=graphql_ide(), multipart_uploads_enabled=True)),
    path("healthz", healthz),
    path("readyz", healthz),
    path("livez", livez),
    path("metrics", metrics_view),
    path("admin/", admin.site.urls),
    # Avatars are public images under unguessable names; documents have their own checked view.
    path("media/avatars/<str:name>", avatar),
    path("documents/<uuid:uid>/download", download),
    path("collections/<uuid:uid>/export", export_collection),
    path("me/export", export_my_data),
]
