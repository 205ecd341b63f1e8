"""Development tools of sfsync, never deployed: the embedded warehouse (``embedded``), the demo that
``make run`` starts (``demo``), and the loader of ``airflow_settings.yaml`` (``airflow_settings``). With the
local org (``localorg``) they make up the ``dev`` extra; the product is the ``sfsync`` package alone."""
