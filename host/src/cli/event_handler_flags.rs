//! `teleport-event-handler start`'s flags on `ferry start` and `ferry
//! check` (`--teleport-addr`, `--fluentd-url`, `--dry-run`, …), from the
//! one table of them, `config::legacy::FLAGS`. Each sets what its `FDFWD_*`
//! variable sets and wins over it.

use crate::app::legacy::{FLAGS, LegacyFlag};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

/// The event handler's flags given on the command line.
#[derive(Debug, Clone, Default)]
pub struct EventHandlerFlags {
    /// (variable after `FDFWD_`, value), in the table's order.
    pub values: Vec<(&'static str, String)>,
}

fn arg(flag: &LegacyFlag) -> Arg {
    let arg = Arg::new(flag.name)
        .long(flag.name)
        .help_heading("teleport-event-handler's flags")
        .help(format!("As the event handler's flag: sets what FDFWD_{} sets", flag.variable));
    if flag.switch {
        // `--dry-run`, or `--dry-run=false` as kong takes it.
        arg.value_name("BOOL").num_args(0..=1).require_equals(true).default_missing_value("true").action(ArgAction::Set)
    } else {
        arg.value_name("VALUE").action(ArgAction::Set)
    }
}

impl Args for EventHandlerFlags {
    fn augment_args(command: Command) -> Command {
        command.args(FLAGS.iter().map(arg))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for EventHandlerFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let values = FLAGS.iter().filter_map(|flag| Some((flag.variable, matches.get_one::<String>(flag.name)?.clone()))).collect();
        Ok(EventHandlerFlags { values })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Start {
        #[command(flatten)]
        flags: EventHandlerFlags,
    }

    #[test]
    fn flags_become_their_variables_and_switches_take_an_optional_value() {
        let start = Start::try_parse_from(["start", "--teleport-addr", "auth:3025", "--dry-run", "--lock-enabled=false", "--batch=50"])
            .expect("parses");
        assert_eq!(
            start.flags.values,
            [
                ("BATCH", "50".to_owned()),
                ("DRY_RUN", "true".to_owned()),
                ("LOCKING_ENABLED", "false".to_owned()),
                ("TELEPORT_ADDR", "auth:3025".to_owned())
            ]
        );
        assert!(Start::try_parse_from(["start", "--no-such-flag", "x"]).is_err(), "an unknown flag is refused");
        // Those of every release: the one for its misspelled FDWRD_MAX_CONNECTIONS, and the retired ones.
        let older = Start::try_parse_from(["start", "--fluentd-max-connections", "4", "--teleport-debug", "--namespace", "default"])
            .expect("parses");
        assert_eq!(
            older.flags.values,
            [("MAX_CONNECTIONS", "4".to_owned()), ("DEBUG", "true".to_owned()), ("NAMESPACE", "default".to_owned())]
        );
    }
}
