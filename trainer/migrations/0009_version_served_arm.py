from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("trainer", "0008_dataset_policy"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="served_arm",
            field=models.CharField(
                blank=True,
                help_text="The evaluated arm this version serves as: 'tuned', or 'tuned+context' (prompts carry "
                "snippets of the rest of its repositories from the dataset's code index).",
                max_length=32,
            ),
        ),
    ]
