from pfs_core.cli import main

raise SystemExit(main())
