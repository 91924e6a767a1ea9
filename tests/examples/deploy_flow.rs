//! Deploys the example flow `tests/flows/route-by-priority.json` (a NiFi "Download flow
//! definition" export) into the running test NiFi, with a parameter overridden, starts it, prints
//! the Site-to-Site port names to send to and receive from, checks its bulletins and deletes it.
//!
//! ```sh
//! cargo xtask nifi up
//! cargo run -p nifi-testkit --example deploy_flow [-- FLOW.json [NAME=VALUE]...]
//! ```

use nifi_testkit::Nifi;
use nifi_testkit::flow::FlowDefinition;

#[tokio::main]
async fn main() -> nifi_testkit::Result<()> {
    let mut args = std::env::args().skip(1);
    let file = args.next().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/flows/route-by-priority.json").to_owned()
    });
    let mut def = FlowDefinition::from_file(&file)?;
    let overrides: Vec<String> = args.collect();
    let overrides = if overrides.is_empty() && file.ends_with("route-by-priority.json") {
        vec!["large.threshold=20".to_owned()]
    } else {
        overrides
    };
    for kv in &overrides {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        def = def.with_parameter(k, v)?;
    }

    let nifi = Nifi::shared().await?;
    // ExtractText and RouteOnAttribute; a no-op when NiFi has them already.
    nifi.install_nars(&[
        "org.apache.nifi:nifi-standard-services-api-nar",
        "org.apache.nifi:nifi-standard-nar",
    ])
    .await?;
    let flow = nifi.deploy_flow(&def, "example").await?;
    flow.start().await?;
    println!("deployed {file} as process group {:?}", flow.name());
    for (name, port) in flow.inputs() {
        println!("  input  {name:?}: send over S2S to {:?}", port.name());
    }
    for (name, port) in flow.outputs() {
        println!("  output {name:?}: receive over S2S from {:?}", port.name());
    }
    flow.check_bulletins().await?;
    flow.delete().await?;
    println!("deleted {:?}", flow.name());
    Ok(())
}
