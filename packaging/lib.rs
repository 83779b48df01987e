//! ferry's packaging: `Dockerfile` and `build-static.sh` (the container
//! image and its static binary), `helm/ferry` (the Kubernetes chart, which
//! takes the values of Teleport's teleport-plugin-event-handler chart) and
//! `systemd/ferry.service`. This crate holds no code; its tests check them.
