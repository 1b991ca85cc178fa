from django.apps import AppConfig


class PlatformConfig(AppConfig):
    name = "recs_pipeline_tests.django_app"
    label = "platform"
    default_auto_field = "django.db.models.BigAutoField"
