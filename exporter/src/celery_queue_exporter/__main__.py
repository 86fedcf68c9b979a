import sys

from celery_queue_exporter.cli import main

sys.exit(main())
