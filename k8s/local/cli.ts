/**
 * npm run local-cluster -- up | down | status
 */
import { down, KUBECONFIG, status, up } from "./cluster";

async function main(command: string | undefined): Promise<number> {
    switch (command) {
        case "up": {
            const state = await up();
            console.log(state.kubeconfig);
            return 0;
        }
        case "down":
            await down();
            return 0;
        case "status": {
            const s = status();
            if (!s.state) {
                console.log("local cluster: not running");
                return 3;
            }
            console.log(`local cluster: ${s.running ? "running" : "partly running (run down, then up)"} at ${s.state.server}`);
            for (const p of s.processes) console.log(`  ${p.name.padEnd(24)} pid ${String(p.pid).padEnd(8)} ${p.alive ? "running" : "stopped"}`);
            console.log(`  kubeconfig: ${KUBECONFIG}`);
            return s.running ? 0 : 1;
        }
        default:
            console.error(`usage: npm run local-cluster -- up | down | status`);
            return 2;
    }
}

main(process.argv[2]).then((code) => process.exit(code), (e) => {
    console.error(`local-cluster: ${(e as Error).message}`);
    process.exit(1);
});
