// The Delta Spark connector's log store for tables on S3 that several drivers write at once
// (`delta.s3_log_store: conditional-put`, docs/lakehouse.md). downbeat compiles it once, on first
// use, into the connector's jar cache (pipelines/connector.py `log_store_jar`).
//
// Delta commits version N by creating `_delta_log/N.json` only if it does not exist. The default S3
// log store cannot ask S3 for that, so two drivers can both "create" one version and one commit is
// lost. S3 (and moto, MinIO) refuse a PutObject carrying `If-None-Match: *` when the key exists
// (412 Precondition Failed, or 409 while another conditional put of the key is in flight): the loser
// gets FileAlreadyExistsException, which the connector turns into its conflict check and retry at
// the next version, as on HDFS. Reads and listings are S3A's own (S3 lists consistently since 2020).
package downbeat.delta;

import io.delta.storage.HadoopFileSystemLogStore;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.util.Iterator;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.s3a.S3AFileSystem;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.PutObjectRequest;
import software.amazon.awssdk.services.s3.model.S3Exception;

public class ConditionalPutS3LogStore extends HadoopFileSystemLogStore {

  public ConditionalPutS3LogStore(Configuration initHadoopConf) {
    super(initHadoopConf);
  }

  @Override
  public void write(Path path, Iterator<String> actions, Boolean overwrite, Configuration hadoopConf)
      throws IOException {
    FileSystem fs = path.getFileSystem(hadoopConf);
    if (!(fs instanceof S3AFileSystem)) {
      throw new IOException(
          "ConditionalPutS3LogStore writes through S3A only; " + path + " is on " + fs.getClass().getName());
    }
    S3AFileSystem s3a = (S3AFileSystem) fs;
    StringBuilder body = new StringBuilder();
    while (actions.hasNext()) {
      body.append(actions.next()).append('\n');
    }
    PutObjectRequest.Builder request =
        PutObjectRequest.builder().bucket(s3a.getBucket()).key(s3a.pathToKey(s3a.makeQualified(path)));
    if (!overwrite) {
      request.overrideConfiguration(o -> o.putHeader("If-None-Match", "*"));
    }
    // S3A's own client: its endpoint, credentials, region and path style, as configured.
    S3Client client = s3a.getS3AInternals().getAmazonS3Client("delta log commit");
    try {
      client.putObject(request.build(), RequestBody.fromBytes(body.toString().getBytes(StandardCharsets.UTF_8)));
    } catch (S3Exception e) {
      if (!overwrite && (e.statusCode() == 412 || e.statusCode() == 409)) {
        throw new FileAlreadyExistsException(path.toString());
      }
      throw new IOException("PutObject " + path + " failed: " + e.getMessage(), e);
    } catch (SdkException e) {
      throw new IOException("PutObject " + path + " failed: " + e.getMessage(), e);
    }
  }

  @Override
  public Boolean isPartialWriteVisible(Path path, Configuration hadoopConf) {
    return false; // a PutObject lands whole or not at all
  }
}
