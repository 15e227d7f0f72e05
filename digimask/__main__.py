from digimask.cli import main

raise SystemExit(main())
