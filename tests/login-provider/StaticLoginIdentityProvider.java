package nifi_s2s.testkit;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.concurrent.TimeUnit;

import org.apache.nifi.authentication.AuthenticationResponse;
import org.apache.nifi.authentication.LoginCredentials;
import org.apache.nifi.authentication.LoginIdentityProvider;
import org.apache.nifi.authentication.LoginIdentityProviderConfigurationContext;
import org.apache.nifi.authentication.LoginIdentityProviderInitializationContext;
import org.apache.nifi.authentication.exception.InvalidLoginCredentialsException;
import org.apache.nifi.authentication.exception.ProviderCreationException;

/**
 * A username/password login for test NiFis of nifi-s2s: one user whose name and password come
 * from login-identity-providers.xml ("Username", "Password"). It exists because the single-user
 * provider NAR is not on the Maven repository the test kit can reach; it lets tests obtain real
 * NiFi-issued bearer tokens from /nifi-api/access/token. Never use it outside tests.
 */
public class StaticLoginIdentityProvider implements LoginIdentityProvider {
    private String username;
    private byte[] password;
    private long expirationMillis;

    @Override
    public void initialize(LoginIdentityProviderInitializationContext context) {
    }

    @Override
    public void onConfigured(LoginIdentityProviderConfigurationContext context) throws ProviderCreationException {
        username = context.getProperty("Username");
        String pw = context.getProperty("Password");
        if (username == null || username.isBlank() || pw == null || pw.isEmpty()) {
            throw new ProviderCreationException("Username and Password are required");
        }
        password = pw.getBytes(StandardCharsets.UTF_8);
        String minutes = context.getProperty("Expiration Minutes");
        long m = minutes == null || minutes.isBlank() ? 60 : Long.parseLong(minutes.trim());
        expirationMillis = TimeUnit.MINUTES.toMillis(m);
    }

    @Override
    public AuthenticationResponse authenticate(LoginCredentials credentials) throws InvalidLoginCredentialsException {
        byte[] given = credentials.getPassword() == null
                ? new byte[0] : credentials.getPassword().getBytes(StandardCharsets.UTF_8);
        // Constant-time comparison, as a real provider would do.
        boolean ok = username.equals(credentials.getUsername()) & MessageDigest.isEqual(password, given);
        if (!ok) {
            throw new InvalidLoginCredentialsException("The supplied username and password are not valid.");
        }
        return new AuthenticationResponse(username, username, expirationMillis, "nifi-s2s-test-login");
    }

    @Override
    public void preDestruction() {
    }
}
