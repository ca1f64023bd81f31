from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0004_serving_response_filters"),
    ]

    operations = [
        migrations.AddField(
            model_name="servingpolicy",
            name="repository_context",
            field=models.BooleanField(
                default=True,
                help_text="Completions carry snippets of the served model's repositories (from its dataset's code index, never the current file) when the served version was measured better with them.",
            ),
        ),
    ]
