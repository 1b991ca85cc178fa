"""A minimal Django project whose models follow docs/data-contract.md the ordinary Django way.

`models.py` declares the app's tables as a Django team would (ForeignKeys, `db_table`,
BigAutoField, a custom user model with the auth columns, `USE_TZ=True`); `migrations/` was made by
`makemigrations` and is applied by `migrate` on SQLite and PostgreSQL; `runtime.py` configures
Django for a test. The tests in `recs_pipeline_tests/defs/test_django_app.py` write through the
ORM, run the pipeline's jobs and read the results back through the ORM.
"""
