//! `leadscore token new`: a fresh bearer token, and the configuration lines that admit it.

use leadscore_config::ROLES;
use leadscore_config::tokens::new_token;

/// Prints a new token for `name` with `roles` once, and the lines to add to the configuration.
pub fn new(name: &str, roles: &[String]) -> anyhow::Result<()> {
    if let Some(bad) = roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
        anyhow::bail!("--roles: {bad:?} is not a role; roles are {}", ROLES.join(", "));
    }
    anyhow::ensure!((1..=64).contains(&name.len()), "--name: must be 1-64 bytes");
    let (token, lines) = new_token(name, roles);
    println!("token (shown once; give it to {name} and keep it secret):\n{token}\n");
    print!("add to the server's configuration:\n{lines}");
    Ok(())
}
