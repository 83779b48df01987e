//! ECS `event.category` and `event.type` for the Teleport event types whose
//! meaning is clear. Other types get neither: ECS prefers no category to a
//! wrong one. Values are from ECS's allowed lists (a type is listed only
//! under a category that expects it).

/// `(event.category, event.type)` for a Teleport event type.
pub(crate) fn of(event_type: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    const AUTHENTICATION: &[&str] = &["authentication"];
    const SESSION: &[&str] = &["session"];
    const DATABASE_SESSION: &[&str] = &["database", "session"];
    const IAM: &[&str] = &["iam"];
    Some(match event_type {
        "user.login" => (AUTHENTICATION, &["start"]),
        "auth" => (AUTHENTICATION, &["info"]),
        "session.start" | "session.join" | "app.session.start" | "windows.desktop.session.start" => (SESSION, &["start"]),
        "session.end" | "session.leave" | "app.session.end" | "windows.desktop.session.end" => (SESSION, &["end"]),
        "db.session.start" => (DATABASE_SESSION, &["start"]),
        "db.session.end" => (DATABASE_SESSION, &["end"]),
        "user.create" => (IAM, &["user", "creation"]),
        "user.update" | "user.password_change" => (IAM, &["user", "change"]),
        "user.delete" => (IAM, &["user", "deletion"]),
        "exec" | "session.command" => (&["process"], &["start"]),
        "sftp" | "scp" => (&["file"], &["access"]),
        "port" | "session.network" => (&["network"], &["connection"]),
        other if other.starts_with("db.session.") => (&["database"], &["access"]),
        _ => return None,
    })
}
