from django.conf import settings
from django.db import migrations, models


def emails_of_members(apps, schema_editor):
    CollectionShare = apps.get_model("documents", "CollectionShare")
    for share in CollectionShare.objects.select_related("user"):
        share.email = share.user.email.lower()
        share.save(update_fields=["email"])


class Migration(migrations.Migration):
    dependencies = [
        ("documents", "0003_search_engines"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="collectionshare", name="one_share_per_user"),
        migrations.AddField(model_name="collectionshare", name="email", field=models.EmailField(default="", max_length=254),
                            preserve_default=False),
        migrations.RunPython(emails_of_members, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="collectionshare", name="user",
            field=models.ForeignKey(blank=True, null=True, on_delete=models.deletion.CASCADE,
                                    related_name="collection_shares", to=settings.AUTH_USER_MODEL)),
        migrations.AddConstraint(model_name="collectionshare",
                                 constraint=models.UniqueConstraint(fields=("collection", "email"), name="one_share_per_email")),
    ]
