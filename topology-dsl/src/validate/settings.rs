//! The topology-wide keys of `[topology]`: the name, the resources that travel with it,
//! the run settings and the checkpoint settings.

use std::time::Duration;

use crate::diagnostic::did_you_mean;
use crate::resources::{check_resource_path, Resources};
use crate::spec::TopologySpec;
use crate::topology::{Checkpoints, Settings, StateBackend};

use super::{number, seconds, Diagnostic, Validator, MAX_ACKERS, MAX_SECS, MAX_WORKERS};

impl Validator<'_> {
    pub(super) fn name(&mut self, spec: &TopologySpec) -> String {
        match spec.name.as_deref() {
            None => "topology".to_string(),
            Some(n) if n.trim().is_empty() => {
                self.err(Diagnostic::new(
                    "topology name must not be empty",
                    spec.spans.setting("name"),
                ));
                "topology".to_string()
            }
            Some(n) => {
                if let Err(e) = crate::names::check_name(n) {
                    self.err(
                        Diagnostic::new(
                            format!("invalid topology name \"{}\": {}", e.shown, e.why_short()),
                            spec.spans.setting("name"),
                        )
                        .with_hint(crate::names::NAME_RULE),
                    );
                }
                n.to_string()
            }
        }
    }

    /// `resources` and `python_requirements`: paths inside the topology's folder, the
    /// requirements among the resources.
    pub(super) fn resources(&mut self, spec: &TopologySpec) -> Resources {
        let mut paths = Vec::new();
        for path in spec.resources.iter().flatten() {
            match check_resource_path(path) {
                Ok(()) => paths.push(path.clone()),
                Err(why) => self.err(Diagnostic::new(
                    format!("resource \"{}\": {why}", path.escape_debug()),
                    spec.spans.setting("resources"),
                )),
            }
        }
        let mut resources = Resources {
            paths,
            python_requirements: None,
        };
        if let Some(req) = &spec.python_requirements {
            let span = spec.spans.setting("python_requirements");
            if let Err(why) = check_resource_path(req) {
                self.err(Diagnostic::new(
                    format!("\"python_requirements\" \"{}\": {why}", req.escape_debug()),
                    span,
                ));
            } else if !resources.covers(req) {
                self.err(
                    Diagnostic::new(
                        format!("\"python_requirements\" \"{req}\" is not among the resources"),
                        span,
                    )
                    .with_hint(format!("add \"{req}\" (or its folder) to \"resources\"")),
                );
            } else {
                resources.python_requirements = Some(req.clone());
            }
        }
        resources
    }

    pub(super) fn settings(&mut self, spec: &TopologySpec) -> Settings {
        let span = |k: &str| spec.spans.setting(k);
        let workers = spec.workers.unwrap_or(1);
        if workers < 1 {
            self.err(Diagnostic::new(
                format!("\"workers\" must be at least 1, not {workers}"),
                span("workers"),
            ));
        } else if workers > MAX_WORKERS {
            self.err(Diagnostic::new(
                format!("\"workers\" must be at most {MAX_WORKERS}, not {workers}"),
                span("workers"),
            ));
        }
        let workers = workers.clamp(1, MAX_WORKERS) as usize;
        let acking = spec.acking.unwrap_or(true);
        let ackers = match spec.ackers {
            Some(n) if n < 0 => {
                self.err(Diagnostic::new(
                    format!("\"ackers\" must be 0 or more, not {n}"),
                    span("ackers"),
                ));
                0
            }
            Some(n) if n > MAX_ACKERS => {
                self.err(Diagnostic::new(
                    format!("\"ackers\" must be at most {MAX_ACKERS}, not {n}"),
                    span("ackers"),
                ));
                0
            }
            Some(n) => n as usize,
            None => workers,
        };
        let timeout = spec.message_timeout_secs.unwrap_or(30.0);
        let message_timeout = seconds(timeout).unwrap_or_else(|| {
            self.err(Diagnostic::new(
                format!(
                    "\"message_timeout_secs\" must be a positive number of seconds up to {MAX_SECS}, not {}",
                    number(timeout)
                ),
                span("message_timeout_secs"),
            ));
            Duration::from_secs(30)
        });
        let max_spout_pending = match spec.max_spout_pending {
            Some(n) if n < 0 => {
                self.err(
                    Diagnostic::new(
                        format!("\"max_spout_pending\" must be 0 or more, not {n}"),
                        span("max_spout_pending"),
                    )
                    .with_hint("0 means unbounded"),
                );
                None
            }
            Some(0) => None,
            Some(n) => Some(n as usize),
            None if acking => Some(1000),
            None => None,
        };
        Settings {
            workers,
            acking,
            ackers: if acking { ackers } else { 0 },
            message_timeout,
            max_spout_pending,
            load_aware: !spec.disable_loadaware_messaging.unwrap_or(false),
            encrypt: spec.encrypt.unwrap_or(false),
            checkpoints: self.checkpoints(spec),
        }
    }

    /// `checkpoint_interval_secs` and the state settings that only make sense with it.
    fn checkpoints(&mut self, spec: &TopologySpec) -> Option<Checkpoints> {
        let span = |k: &str| spec.spans.setting(k);
        let Some(secs) = spec.checkpoint_interval_secs else {
            for key in ["state_backend", "state_url", "state_dir"] {
                let set = match key {
                    "state_backend" => spec.state_backend.is_some(),
                    "state_url" => spec.state_url.is_some(),
                    _ => spec.state_dir.is_some(),
                };
                if set {
                    self.err(
                        Diagnostic::new(
                            format!("\"{key}\" is set but the topology does not checkpoint"),
                            span(key),
                        )
                        .with_hint("set \"checkpoint_interval_secs\" to take checkpoints"),
                    );
                }
            }
            return None;
        };
        let interval = seconds(secs).unwrap_or_else(|| {
            self.err(Diagnostic::new(
                format!(
                    "\"checkpoint_interval_secs\" must be a positive number of seconds up to {MAX_SECS}, not {}",
                    number(secs)
                ),
                span("checkpoint_interval_secs"),
            ));
            Duration::from_secs(1)
        });
        let backend = match spec.state_backend.as_deref().unwrap_or("local") {
            "local" => {
                if spec.state_url.is_some() {
                    self.err(
                        Diagnostic::new(
                            "\"state_url\" is only used by state_backend = \"redis\"",
                            span("state_url"),
                        )
                        .with_hint("the local backend keeps its files under \"state_dir\""),
                    );
                }
                StateBackend::Local {
                    dir: spec.state_dir.as_ref().map(Into::into),
                }
            }
            "redis" => {
                if spec.state_dir.is_some() {
                    self.err(
                        Diagnostic::new(
                            "\"state_dir\" is only used by state_backend = \"local\"",
                            span("state_dir"),
                        )
                        .with_hint("the redis backend keeps checkpoints at \"state_url\""),
                    );
                }
                match &spec.state_url {
                    Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                        StateBackend::Redis { url: url.clone() }
                    }
                    Some(url) => {
                        self.err(
                            Diagnostic::new(
                                format!("\"state_url\" must be a redis:// URL, not \"{url}\""),
                                span("state_url"),
                            )
                            .with_hint("e.g. state_url = \"redis://127.0.0.1:6379/0\""),
                        );
                        StateBackend::Redis { url: url.clone() }
                    }
                    None => {
                        self.err(
                            Diagnostic::new(
                                "state_backend = \"redis\" needs \"state_url\"",
                                span("state_backend"),
                            )
                            .with_hint("e.g. state_url = \"redis://127.0.0.1:6379/0\""),
                        );
                        StateBackend::Redis { url: String::new() }
                    }
                }
            }
            other => {
                let hint = did_you_mean(other, ["local", "redis"])
                    .unwrap_or_else(|| "use \"local\" or \"redis\"".to_string());
                self.err(
                    Diagnostic::new(
                        format!("unknown state backend \"{other}\""),
                        span("state_backend"),
                    )
                    .with_hint(hint),
                );
                StateBackend::Local { dir: None }
            }
        };
        Some(Checkpoints { interval, backend })
    }
}
