# Astro Runtime 3.3 (Apache Airflow 3.3): its build installs packages.txt (none needed) and requirements.txt,
# and copies dags/, include/ and plugins/; .dockerignore keeps the development tools out.
FROM astrocrpublic.azurecr.io/runtime:3.3-2

# The sync engine is the package include/sfsync (with its SQL), imported by name from dags/ and plugins/.
ENV PYTHONPATH=/usr/local/airflow/include
