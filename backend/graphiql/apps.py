from django.apps import AppConfig


class GraphiQLConfig(AppConfig):
    """GraphiQL served from this project's static files, never from a CDN.

    ``templates/graphql/graphiql.html`` replaces strawberry's page (which loads from unpkg); its
    scripts come from ``static/graphiql/vendor/``, filled by ``npm ci`` in this folder.
    """

    name = "backend.graphiql"
    label = "graphiql"
