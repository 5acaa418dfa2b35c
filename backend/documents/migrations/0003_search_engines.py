from django.db import migrations


def forwards(apps, schema_editor):
    from backend.documents.engines import schema

    schema.ensure(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("documents", "0002_ingestion_lease")]
    atomic = False  # CREATE EXTENSION may fail on its own without undoing the rest

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
