// Curator's EnsembleTracker against a running ensemble: a client given one
// member's address learns the others from /zookeeper/config, and follows
// reconfigs that add and remove a member. Prints each connection string it
// sees (addresses sorted), one line per step, for the test to compare.
//
// Arguments: connect string, super user:password, the server lines of the
// ensemble with client addresses (comma-separated), an observer's line to
// add (its id is removed again afterwards).

import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.RetryOneTime;

public class EnsembleTrackerCheck {
    private static final long WAIT_MS = 60_000;

    private static String sorted(String connect) {
        String[] parts = connect.split(",");
        Arrays.sort(parts);
        return String.join(",", parts);
    }

    /** Waits until the tracked connection string has `count` addresses. */
    private static String waitFor(CuratorFramework c, int count, String what) throws Exception {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (true) {
            String now = c.getZookeeperClient().getCurrentConnectionString();
            if (now.split(",").length == count) {
                return sorted(now);
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException(what + ": still " + now);
            }
            Thread.sleep(20);
        }
    }

    public static void main(String[] args) throws Exception {
        String connect = args[0];
        String superUser = args[1];
        String lines = args[2];
        String observer = args[3];
        String observerId = observer.substring("server.".length(), observer.indexOf('='));
        CuratorFramework c = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .retryPolicy(new RetryOneTime(100))
                .authorization("digest", superUser.getBytes("UTF-8"))
                .ensembleTracker(true)
                .build();
        c.start();
        if (!c.blockUntilConnected(60, TimeUnit.SECONDS)) {
            throw new IllegalStateException("not connected");
        }
        int members = lines.split(",").length;
        // The lines again, with client addresses (a change of addresses
        // only), so both servers' configurations name every client port.
        c.reconfig().joining(lines.split(",")).forEnsemble();
        System.out.println("tracked " + waitFor(c, members, "the ensemble"));
        c.reconfig().joining(observer).forEnsemble();
        System.out.println("added " + waitFor(c, members + 1, "the added observer"));
        c.reconfig().leaving(observerId).forEnsemble();
        System.out.println("removed " + waitFor(c, members, "the removed observer"));
        c.close();
    }
}
