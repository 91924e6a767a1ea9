/*
 * nifi-s2s test kit: a STAND-IN for NiFi's DBCPConnectionPool, written for this project.
 *
 * Why: the Maven repository this project reaches has no org.apache.nifi:nifi-dbcp-service-nar for
 * any 1.x version (404 for 1.16.3 through 1.28.1), so a kit-provisioned NiFi 1.18.0 has no JDBC
 * connection pool. The kit (nifi_testkit::postgres::install_dbcp) compiles this class and packages
 * it as a NAR with the real bundle's coordinates (org.apache.nifi:nifi-dbcp-service-nar:<version>),
 * ONLY when the real NAR cannot be resolved. Flows built against it (tests/flows/idb-mirror*.json)
 * therefore reference the real bundle and the real type, org.apache.nifi.dbcp.DBCPConnectionPool,
 * and use only properties the real service has (same names): they run unchanged in any NiFi with
 * the standard distribution.
 *
 * What it does: loads the JDBC driver from "Database Driver Location(s)" (files, folders of jars, or
 * URLs, comma-separated) in its own class loader, checks a connection on enable, and opens a new
 * connection per getConnection() (the caller closes it). No pooling, no Kerberos: test use only.
 */
package org.apache.nifi.dbcp;

import java.io.File;
import java.net.URL;
import java.net.URLClassLoader;
import java.sql.Connection;
import java.sql.Driver;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

import org.apache.nifi.annotation.documentation.CapabilityDescription;
import org.apache.nifi.annotation.documentation.Tags;
import org.apache.nifi.annotation.lifecycle.OnDisabled;
import org.apache.nifi.annotation.lifecycle.OnEnabled;
import org.apache.nifi.components.PropertyDescriptor;
import org.apache.nifi.components.ValidationResult;
import org.apache.nifi.components.Validator;
import org.apache.nifi.controller.AbstractControllerService;
import org.apache.nifi.controller.ConfigurationContext;
import org.apache.nifi.expression.ExpressionLanguageScope;
import org.apache.nifi.processor.exception.ProcessException;
import org.apache.nifi.reporting.InitializationException;

@Tags({"dbcp", "jdbc", "database", "connection", "test-stand-in"})
@CapabilityDescription("nifi-s2s test kit stand-in for DBCPConnectionPool (the real NAR is not on the "
        + "reachable Maven repository): a new JDBC connection per request, driver from Database Driver Location(s).")
public class DBCPConnectionPool extends AbstractControllerService implements DBCPService {

    private static final Validator NON_EMPTY = (subject, input, context) -> new ValidationResult.Builder()
            .subject(subject).input(input)
            .valid(input != null && !input.trim().isEmpty())
            .explanation(subject + " must not be empty").build();

    public static final PropertyDescriptor DATABASE_URL = new PropertyDescriptor.Builder()
            .name("Database Connection URL").displayName("Database Connection URL")
            .description("JDBC URL of the database.")
            .required(true).addValidator(NON_EMPTY)
            .expressionLanguageSupported(ExpressionLanguageScope.VARIABLE_REGISTRY).build();
    public static final PropertyDescriptor DB_DRIVERNAME = new PropertyDescriptor.Builder()
            .name("Database Driver Class Name").displayName("Database Driver Class Name")
            .description("Class name of the JDBC driver.")
            .required(true).addValidator(NON_EMPTY)
            .expressionLanguageSupported(ExpressionLanguageScope.VARIABLE_REGISTRY).build();
    public static final PropertyDescriptor DB_DRIVER_LOCATION = new PropertyDescriptor.Builder()
            .name("database-driver-locations").displayName("Database Driver Location(s)")
            .description("Comma-separated files, folders (their jars) or URLs with the driver.")
            .required(false).addValidator(Validator.VALID)
            .expressionLanguageSupported(ExpressionLanguageScope.VARIABLE_REGISTRY).build();
    public static final PropertyDescriptor DB_USER = new PropertyDescriptor.Builder()
            .name("Database User").displayName("Database User")
            .required(false).addValidator(Validator.VALID)
            .expressionLanguageSupported(ExpressionLanguageScope.VARIABLE_REGISTRY).build();
    public static final PropertyDescriptor DB_PASSWORD = new PropertyDescriptor.Builder()
            .name("Password").displayName("Password")
            .required(false).sensitive(true).addValidator(Validator.VALID).build();

    private static final List<PropertyDescriptor> PROPERTIES =
            Arrays.asList(DATABASE_URL, DB_DRIVERNAME, DB_DRIVER_LOCATION, DB_USER, DB_PASSWORD);

    private volatile Driver driver;
    private volatile URLClassLoader loader;
    private volatile String url;
    private volatile Properties props;

    @Override
    protected List<PropertyDescriptor> getSupportedPropertyDescriptors() {
        return PROPERTIES;
    }

    @OnEnabled
    public void onEnabled(final ConfigurationContext context) throws InitializationException {
        url = context.getProperty(DATABASE_URL).evaluateAttributeExpressions().getValue();
        final String driverName = context.getProperty(DB_DRIVERNAME).evaluateAttributeExpressions().getValue().trim();
        final String locations = context.getProperty(DB_DRIVER_LOCATION).evaluateAttributeExpressions().getValue();
        final Properties p = new Properties();
        final String user = context.getProperty(DB_USER).evaluateAttributeExpressions().getValue();
        final String password = context.getProperty(DB_PASSWORD).getValue();
        if (user != null) {
            p.setProperty("user", user);
        }
        if (password != null) {
            p.setProperty("password", password);
        }
        props = p;
        try {
            final List<URL> urls = new ArrayList<>();
            if (locations != null) {
                for (String loc : locations.split(",")) {
                    loc = loc.trim();
                    if (loc.isEmpty()) {
                        continue;
                    }
                    final File f = new File(loc);
                    if (f.isDirectory()) {
                        final File[] jars = f.listFiles((d, n) -> n.endsWith(".jar"));
                        if (jars != null) {
                            for (File j : jars) {
                                urls.add(j.toURI().toURL());
                            }
                        }
                    } else if (f.isFile()) {
                        urls.add(f.toURI().toURL());
                    } else {
                        urls.add(new URL(loc));
                    }
                }
            }
            loader = new URLClassLoader(urls.toArray(new URL[0]), getClass().getClassLoader());
            driver = (Driver) Class.forName(driverName, true, loader).getDeclaredConstructor().newInstance();
        } catch (final Exception e) {
            throw new InitializationException("loading JDBC driver " + driverName + " from " + locations + ": " + e, e);
        }
        try (Connection c = getConnection()) {
            getLogger().info("connected to {}", new Object[]{url});
        } catch (final Exception e) {
            throw new InitializationException("connecting to " + url + ": " + e.getMessage(), e);
        }
    }

    @OnDisabled
    public void onDisabled() {
        driver = null;
        final URLClassLoader l = loader;
        loader = null;
        if (l != null) {
            try {
                l.close();
            } catch (final Exception ignored) {
                // nothing to release beyond the jar handles
            }
        }
    }

    @Override
    public Connection getConnection() throws ProcessException {
        final Driver d = driver;
        if (d == null) {
            throw new ProcessException("connection pool is not enabled");
        }
        try {
            final Connection c = d.connect(url, props);
            if (c == null) {
                throw new ProcessException("driver " + d.getClass().getName() + " does not accept " + url);
            }
            return c;
        } catch (final SQLException e) {
            throw new ProcessException("connecting to " + url + ": " + e.getMessage(), e);
        }
    }
}
